package netstack

import (
	"encoding/binary"
	"net/netip"
)

const (
	ipv6VersTCFlow = 0
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24

	// IPv6MinimumSize is the size of the fixed IPv6 header.
	IPv6MinimumSize = 40

	// Next-header values that start an extension header (RFC 8200 and the
	// IANA list); Parse does not walk them.
	ipv6HopByHop    = 0
	ipv6Routing     = 43
	ipv6Fragment    = 44
	ipv6AuthHeader  = 51
	ipv6DestOptions = 60
	ipv6Mobility    = 135
	ipv6HIP         = 139
	ipv6Shim6       = 140
)

// isIPv6ExtensionHeader reports whether a next-header value names an
// extension header rather than an upper-layer protocol.
func isIPv6ExtensionHeader(nh uint8) bool {
	switch nh {
	case ipv6HopByHop, ipv6Routing, ipv6Fragment, ipv6AuthHeader, ipv6DestOptions, ipv6Mobility, ipv6HIP, ipv6Shim6:
		return true
	}
	return false
}

// IPv6 is a view of the fixed IPv6 header followed by the rest of the packet.
type IPv6 []byte

// IsValid reports whether b holds a fixed header of version 6 whose payload
// length fits in pktSize (the bytes available from the header on).
func (b IPv6) IsValid(pktSize int) bool {
	return len(b) >= IPv6MinimumSize && b[0]>>4 == 6 &&
		IPv6MinimumSize+int(b.PayloadLength()) <= pktSize && pktSize <= len(b)
}

// TrafficClass returns the traffic class.
func (b IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(b[ipv6VersTCFlow:]) >> 4) }

// FlowLabel returns the 20-bit flow label.
func (b IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(b[ipv6VersTCFlow:]) & 0xFFFFF }

// PayloadLength returns the payload length field.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[ipv6PayloadLen:]) }

// NextHeader returns the next header field.
func (b IPv6) NextHeader() uint8 { return b[ipv6NextHeader] }

// HopLimit returns the hop limit.
func (b IPv6) HopLimit() uint8 { return b[ipv6HopLimit] }

// SourceAddress returns the source address.
func (b IPv6) SourceAddress() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Src : ipv6Src+16])) }

// DestinationAddress returns the destination address.
func (b IPv6) DestinationAddress() netip.Addr {
	return netip.AddrFrom16([16]byte(b[ipv6Dst : ipv6Dst+16]))
}

// Payload returns the payload-length bytes after the fixed header.
func (b IPv6) Payload() []byte { return b[IPv6MinimumSize : IPv6MinimumSize+int(b.PayloadLength())] }

// SetTrafficClassFlowLabel sets version 6, the traffic class and the flow
// label.
func (b IPv6) SetTrafficClassFlowLabel(tc uint8, flow uint32) {
	binary.BigEndian.PutUint32(b[ipv6VersTCFlow:], 6<<28|uint32(tc)<<20|flow&0xFFFFF)
}

// SetPayloadLength sets the payload length field.
func (b IPv6) SetPayloadLength(v uint16) { binary.BigEndian.PutUint16(b[ipv6PayloadLen:], v) }

// SetNextHeader sets the next header field.
func (b IPv6) SetNextHeader(v uint8) { b[ipv6NextHeader] = v }

// SetHopLimit sets the hop limit.
func (b IPv6) SetHopLimit(v uint8) { b[ipv6HopLimit] = v }

// SetSourceAddress sets the source address (an IPv4 address is written
// v4-mapped, an invalid one as ::).
func (b IPv6) SetSourceAddress(a netip.Addr) { v := addr16(a); copy(b[ipv6Src:ipv6Src+16], v[:]) }

// SetDestinationAddress sets the destination address.
func (b IPv6) SetDestinationAddress(a netip.Addr) { v := addr16(a); copy(b[ipv6Dst:ipv6Dst+16], v[:]) }

// SwapAddresses exchanges source and destination in place.
func (b IPv6) SwapAddresses() {
	for i := 0; i < 16; i++ {
		b[ipv6Src+i], b[ipv6Dst+i] = b[ipv6Dst+i], b[ipv6Src+i]
	}
}
