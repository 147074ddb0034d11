package netstack

import (
	"encoding/binary"
	"net/netip"
)

const (
	ipv4VersIHL   = 0
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Protocol  = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16

	// IPv4MinimumSize is the size of an IPv4 header without options.
	IPv4MinimumSize = 20
	// IPv4MaximumHeaderSize is the size of a header with 40 option bytes.
	IPv4MaximumHeaderSize = 60

	// IPv4FlagDontFragment and IPv4FlagMoreFragments are bits of the
	// flags/fragment-offset word.
	IPv4FlagDontFragment  uint16 = 0x4000
	IPv4FlagMoreFragments uint16 = 0x2000
	ipv4FragOffsetMask    uint16 = 0x1FFF

	// DefaultTTL is the TTL (and IPv6 hop limit) of frames this package
	// builds.
	DefaultTTL = 64

	// ProtocolUDP is the IP protocol number of UDP.
	ProtocolUDP = 17

	ipv4OptionNOP = 1
)

// IPv4 is a view of an IPv4 header with its options, followed by the rest
// of the packet.
type IPv4 []byte

// IsValid reports whether b holds a whole IPv4 header that claims version
// 4, a header length of 20–60 bytes and a total length between the header
// length and pktSize (the bytes available from the header on). The
// accessors below may be used once it returned true.
func (b IPv4) IsValid(pktSize int) bool {
	if len(b) < IPv4MinimumSize || b[ipv4VersIHL]>>4 != 4 {
		return false
	}
	hlen := b.HeaderLength()
	total := int(b.TotalLength())
	return hlen >= IPv4MinimumSize && hlen <= len(b) && hlen <= total && total <= pktSize
}

// HeaderLength returns the header length in bytes, options included.
func (b IPv4) HeaderLength() int { return int(b[ipv4VersIHL]&0xF) * 4 }

// TOS returns the type-of-service (DSCP/ECN) byte.
func (b IPv4) TOS() uint8 { return b[ipv4TOS] }

// TotalLength returns the total length field: header plus payload.
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// FlagsFragmentOffset returns the flags and fragment offset word.
func (b IPv4) FlagsFragmentOffset() uint16 { return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) }

// FragmentOffset returns the fragment offset in bytes.
func (b IPv4) FragmentOffset() int { return int(b.FlagsFragmentOffset()&ipv4FragOffsetMask) * 8 }

// IsFragment reports whether the packet is a fragment: more fragments
// follow, or it is not the first.
func (b IPv4) IsFragment() bool {
	return b.FlagsFragmentOffset()&(IPv4FlagMoreFragments|ipv4FragOffsetMask) != 0
}

// TTL returns the time to live.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the upper-layer protocol number.
func (b IPv4) Protocol() uint8 { return b[ipv4Protocol] }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// SourceAddress returns the source address.
func (b IPv4) SourceAddress() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }

// DestinationAddress returns the destination address.
func (b IPv4) DestinationAddress() netip.Addr {
	return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4]))
}

// Options returns the option bytes (empty without options).
func (b IPv4) Options() []byte { return b[IPv4MinimumSize:b.HeaderLength()] }

// Payload returns the bytes after the header up to the total length.
func (b IPv4) Payload() []byte { return b[b.HeaderLength():b.TotalLength()] }

// IsChecksumValid reports whether the header checksum is right.
func (b IPv4) IsChecksumValid() bool { return Checksum(b[:b.HeaderLength()], 0) == 0xFFFF }

// CalculateChecksum returns the value the checksum field should hold,
// summing the header with its checksum field taken as 0.
func (b IPv4) CalculateChecksum() uint16 {
	hlen := b.HeaderLength()
	s := Checksum(b[:ipv4Checksum], 0)
	s = Checksum(b[ipv4Checksum+2:hlen], s)
	return ^s
}

// SetTOS sets the type-of-service byte.
func (b IPv4) SetTOS(v uint8) { b[ipv4TOS] = v }

// SetTotalLength sets the total length field.
func (b IPv4) SetTotalLength(v uint16) { binary.BigEndian.PutUint16(b[ipv4TotalLen:], v) }

// SetID sets the identification field.
func (b IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(b[ipv4ID:], v) }

// SetFlagsFragmentOffset sets the flags and fragment offset word.
func (b IPv4) SetFlagsFragmentOffset(v uint16) { binary.BigEndian.PutUint16(b[ipv4FlagsFrag:], v) }

// SetTTL sets the time to live.
func (b IPv4) SetTTL(v uint8) { b[ipv4TTL] = v }

// SetProtocol sets the protocol number.
func (b IPv4) SetProtocol(v uint8) { b[ipv4Protocol] = v }

// SetChecksum sets the header checksum field.
func (b IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], v) }

// SetSourceAddress sets the source address (0.0.0.0 if a is not IPv4).
func (b IPv4) SetSourceAddress(a netip.Addr) { v := addr4(a); copy(b[ipv4Src:ipv4Src+4], v[:]) }

// SetDestinationAddress sets the destination address (0.0.0.0 if a is not
// IPv4).
func (b IPv4) SetDestinationAddress(a netip.Addr) { v := addr4(a); copy(b[ipv4Dst:ipv4Dst+4], v[:]) }

// SwapAddresses exchanges source and destination; the header checksum
// stays valid, since the sum does not depend on word order.
func (b IPv4) SwapAddresses() {
	for i := 0; i < 4; i++ {
		b[ipv4Src+i], b[ipv4Dst+i] = b[ipv4Dst+i], b[ipv4Src+i]
	}
}

// SetTTLWithChecksumUpdate sets the TTL and patches the header checksum
// incrementally (RFC 1624).
func (b IPv4) SetTTLWithChecksumUpdate(ttl uint8) {
	old := binary.BigEndian.Uint16(b[ipv4TTL:])
	b[ipv4TTL] = ttl
	b.SetChecksum(ChecksumUpdate16(b.Checksum(), old, binary.BigEndian.Uint16(b[ipv4TTL:])))
}

// SetTotalLengthWithChecksumUpdate sets the total length and patches the
// header checksum incrementally (RFC 1624).
func (b IPv4) SetTotalLengthWithChecksumUpdate(v uint16) {
	b.SetChecksum(ChecksumUpdate16(b.Checksum(), b.TotalLength(), v))
	b.SetTotalLength(v)
}

// SetDestinationAddressWithChecksumUpdate rewrites the destination address
// and patches the header checksum incrementally, as a NAT would. The UDP
// checksum, which also covers the address, is the caller's to patch (with
// ChecksumUpdate32) unless it is 0.
func (b IPv4) SetDestinationAddressWithChecksumUpdate(a netip.Addr) {
	old := binary.BigEndian.Uint32(b[ipv4Dst:])
	v := addr4(a)
	b.SetChecksum(ChecksumUpdate32(b.Checksum(), old, binary.BigEndian.Uint32(v[:])))
	copy(b[ipv4Dst:ipv4Dst+4], v[:])
}

// IPv4Fields are the fields Encode writes.
type IPv4Fields struct {
	TOS         uint8
	TotalLength uint16
	ID          uint16
	Flags       uint16 // flags/fragment-offset word, e.g. IPv4FlagDontFragment
	TTL         uint8
	Protocol    uint8
	Src, Dst    netip.Addr
}

// Encode writes a 20-byte header without options from f, checksum
// included. b must hold IPv4MinimumSize bytes.
func (b IPv4) Encode(f *IPv4Fields) {
	b[ipv4VersIHL] = 4<<4 | IPv4MinimumSize/4
	b[ipv4TOS] = f.TOS
	b.SetTotalLength(f.TotalLength)
	b.SetID(f.ID)
	b.SetFlagsFragmentOffset(f.Flags)
	b[ipv4TTL] = f.TTL
	b[ipv4Protocol] = f.Protocol
	b.SetSourceAddress(f.Src)
	b.SetDestinationAddress(f.Dst)
	b.SetChecksum(0)
	b.SetChecksum(^Checksum(b[:IPv4MinimumSize], 0))
}
