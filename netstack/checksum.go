package netstack

import (
	"encoding/binary"
	"net/netip"
)

// Internet checksums (RFC 1071): the ones' complement of the ones'
// complement sum of 16-bit big-endian words. Sums here are the
// uncomplemented 16-bit partial sums; a header field holds ^sum.

// Checksum adds the bytes of b to the partial sum initial and returns the
// new partial sum. An odd trailing byte counts as the high byte of a word,
// so b must be the last piece of a checksummed area if its length is odd.
func Checksum(b []byte, initial uint16) uint16 {
	s := uint64(initial)
	for len(b) >= 16 {
		s += uint64(binary.BigEndian.Uint32(b[0:])) + uint64(binary.BigEndian.Uint32(b[4:])) +
			uint64(binary.BigEndian.Uint32(b[8:])) + uint64(binary.BigEndian.Uint32(b[12:]))
		b = b[16:]
	}
	for len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return fold(s)
}

// fold reduces a 64-bit sum of 16- and 32-bit words to 16 bits with
// end-around carries.
func fold(s uint64) uint16 {
	s = (s >> 32) + (s & 0xFFFFFFFF)
	s = (s >> 32) + (s & 0xFFFFFFFF)
	s = (s >> 16) + (s & 0xFFFF)
	s = (s >> 16) + (s & 0xFFFF)
	return uint16(s)
}

// ChecksumCombine adds two partial sums.
func ChecksumCombine(a, b uint16) uint16 { return fold(uint64(a) + uint64(b)) }

// PseudoHeaderChecksum returns the partial sum of the IPv4 or IPv6 pseudo
// header for an upper-layer packet of the given length and protocol. src and
// dst must both be IPv4 or both IPv6.
func PseudoHeaderChecksum(protocol uint8, src, dst netip.Addr, length uint32) uint16 {
	s := uint64(protocol) + uint64(length>>16) + uint64(length&0xFFFF)
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s += uint64(binary.BigEndian.Uint32(a[:])) + uint64(binary.BigEndian.Uint32(b[:]))
		return fold(s)
	}
	a, b := src.As16(), dst.As16()
	for i := 0; i < 16; i += 8 {
		s += uint64(binary.BigEndian.Uint32(a[i:])) + uint64(binary.BigEndian.Uint32(a[i+4:]))
		s += uint64(binary.BigEndian.Uint32(b[i:])) + uint64(binary.BigEndian.Uint32(b[i+4:]))
	}
	return fold(s)
}

// ChecksumUpdate16 returns the checksum field value after a 16-bit word of
// the covered data changed from old to new, without re-summing the data
// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
func ChecksumUpdate16(checksum, old, new uint16) uint16 {
	return ^fold(uint64(^checksum) + uint64(^old) + uint64(new))
}

// ChecksumUpdate32 is ChecksumUpdate16 for an aligned 32-bit word (an IPv4
// address).
func ChecksumUpdate32(checksum uint16, old, new uint32) uint16 {
	checksum = ChecksumUpdate16(checksum, uint16(old>>16), uint16(new>>16))
	return ChecksumUpdate16(checksum, uint16(old), uint16(new))
}

// addr4 returns ip as 4 bytes, 0.0.0.0 when it is not IPv4 (As4 would
// panic).
func addr4(ip netip.Addr) [4]byte {
	if ip.Is4() || ip.Is4In6() {
		return ip.As4()
	}
	return [4]byte{}
}

// addr16 returns ip as 16 bytes, :: when it is invalid.
func addr16(ip netip.Addr) [16]byte {
	if !ip.IsValid() {
		return [16]byte{}
	}
	return ip.As16()
}
