package netstack

import (
	"encoding/binary"
	"net/netip"
)

const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6

	// UDPMinimumSize is the size of a UDP header.
	UDPMinimumSize = 8
)

// UDP is a view of a UDP header followed by its payload.
type UDP []byte

// IsValid reports whether b holds a header whose length field is between 8
// and len(b).
func (b UDP) IsValid() bool {
	return len(b) >= UDPMinimumSize && b.Length() >= UDPMinimumSize && int(b.Length()) <= len(b)
}

// SourcePort returns the source port.
func (b UDP) SourcePort() uint16 { return binary.BigEndian.Uint16(b[udpSrcPort:]) }

// DestinationPort returns the destination port.
func (b UDP) DestinationPort() uint16 { return binary.BigEndian.Uint16(b[udpDstPort:]) }

// Length returns the length field: header plus payload.
func (b UDP) Length() uint16 { return binary.BigEndian.Uint16(b[udpLength:]) }

// Checksum returns the checksum field.
func (b UDP) Checksum() uint16 { return binary.BigEndian.Uint16(b[udpChecksum:]) }

// Payload returns the payload, up to the length field.
func (b UDP) Payload() []byte { return b[UDPMinimumSize:b.Length()] }

// SetSourcePort sets the source port.
func (b UDP) SetSourcePort(p uint16) { binary.BigEndian.PutUint16(b[udpSrcPort:], p) }

// SetDestinationPort sets the destination port.
func (b UDP) SetDestinationPort(p uint16) { binary.BigEndian.PutUint16(b[udpDstPort:], p) }

// SetLength sets the length field.
func (b UDP) SetLength(v uint16) { binary.BigEndian.PutUint16(b[udpLength:], v) }

// SetChecksum sets the checksum field.
func (b UDP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[udpChecksum:], v) }

// SwapPorts exchanges source and destination ports.
func (b UDP) SwapPorts() {
	b[0], b[1], b[2], b[3] = b[2], b[3], b[0], b[1]
}

// CalculateChecksum returns the value the checksum field should hold for
// the datagram b[:Length()] between src and dst (both IPv4 or both IPv6),
// the checksum field taken as 0. A computed 0 is returned as 0xFFFF, since
// 0 on the wire means "no checksum".
func (b UDP) CalculateChecksum(src, dst netip.Addr) uint16 {
	n := int(b.Length())
	s := PseudoHeaderChecksum(ProtocolUDP, src, dst, uint32(n))
	s = Checksum(b[:udpChecksum], s)
	s = Checksum(b[udpChecksum+2:n], s)
	if c := ^s; c != 0 {
		return c
	}
	return 0xFFFF
}

// IsChecksumValid reports whether the checksum field is right for the
// datagram between src and dst. A field of 0 is not valid here: whether
// "no checksum" is acceptable depends on the IP version (see Parse).
func (b UDP) IsChecksumValid(src, dst netip.Addr) bool {
	n := int(b.Length())
	s := PseudoHeaderChecksum(ProtocolUDP, src, dst, uint32(n))
	return b.Checksum() != 0 && Checksum(b[:n], s) == 0xFFFF
}
