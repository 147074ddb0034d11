package netstack

import (
	"encoding/binary"
	"net"
)

// EtherTypes this package knows.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
	EtherTypeVLAN uint16 = 0x8100 // 802.1Q tag
	EtherTypeQinQ uint16 = 0x88A8 // 802.1ad outer tag: not parsed, ClassOther
	EtherTypeIPv6 uint16 = 0x86DD
)

// MAC is an Ethernet address.
type MAC [6]byte

// String formats m as six colon-separated hex bytes.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

const (
	ethDst  = 0
	ethSrc  = 6
	ethType = 12

	// EthernetLen is the size of an untagged Ethernet header.
	EthernetLen = 14
	// VLANTagLen is the size an 802.1Q tag adds.
	VLANTagLen = 4
)

// Ethernet is a view of an Ethernet header (EthernetLen bytes at least). In
// a tagged frame Type returns EtherTypeVLAN and the VLAN view follows.
type Ethernet []byte

// IsValid reports whether b is long enough for an Ethernet header.
func (b Ethernet) IsValid() bool { return len(b) >= EthernetLen }

// Destination returns the destination MAC.
func (b Ethernet) Destination() MAC { return MAC(b[ethDst : ethDst+6]) }

// Source returns the source MAC.
func (b Ethernet) Source() MAC { return MAC(b[ethSrc : ethSrc+6]) }

// Type returns the EtherType field (EtherTypeVLAN when tagged).
func (b Ethernet) Type() uint16 { return binary.BigEndian.Uint16(b[ethType:]) }

// SetDestination sets the destination MAC.
func (b Ethernet) SetDestination(m MAC) { copy(b[ethDst:ethDst+6], m[:]) }

// SetSource sets the source MAC.
func (b Ethernet) SetSource(m MAC) { copy(b[ethSrc:ethSrc+6], m[:]) }

// SetType sets the EtherType field.
func (b Ethernet) SetType(t uint16) { binary.BigEndian.PutUint16(b[ethType:], t) }

// SwapAddresses exchanges source and destination MACs in place.
func (b Ethernet) SwapAddresses() {
	for i := 0; i < 6; i++ {
		b[ethDst+i], b[ethSrc+i] = b[ethSrc+i], b[ethDst+i]
	}
}

// VLAN is a view of the 4 bytes after an 802.1Q TPID: the tag control
// information and the inner EtherType.
type VLAN []byte

// IsValid reports whether b is long enough for a tag.
func (b VLAN) IsValid() bool { return len(b) >= VLANTagLen }

// TCI returns the tag control information: priority (3 bits), drop
// eligible (1 bit), VLAN id (12 bits).
func (b VLAN) TCI() uint16 { return binary.BigEndian.Uint16(b[0:]) }

// ID returns the VLAN id.
func (b VLAN) ID() uint16 { return b.TCI() & 0x0FFF }

// Priority returns the priority code point.
func (b VLAN) Priority() uint8 { return uint8(b.TCI() >> 13) }

// Type returns the inner EtherType.
func (b VLAN) Type() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// SetTCI sets the tag control information.
func (b VLAN) SetTCI(tci uint16) { binary.BigEndian.PutUint16(b[0:], tci) }

// SetType sets the inner EtherType.
func (b VLAN) SetType(t uint16) { binary.BigEndian.PutUint16(b[2:], t) }
