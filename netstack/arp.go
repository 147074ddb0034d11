package netstack

import (
	"encoding/binary"
	"net/netip"
)

// ARP over Ethernet for IPv4: the only kind this package reads.
const (
	// ARPLen is the size of an Ethernet/IPv4 ARP packet.
	ARPLen = 28

	ARPRequest uint16 = 1
	ARPReply   uint16 = 2

	arpHardwareEthernet uint16 = 1
)

// ARP is a view of an Ethernet/IPv4 ARP packet.
type ARP []byte

// IsValid reports whether b is an ARP packet for Ethernet and IPv4 (hardware
// type 1, protocol 0x0800, address sizes 6 and 4).
func (b ARP) IsValid() bool {
	return len(b) >= ARPLen &&
		binary.BigEndian.Uint16(b[0:]) == arpHardwareEthernet &&
		binary.BigEndian.Uint16(b[2:]) == EtherTypeIPv4 &&
		b[4] == 6 && b[5] == 4
}

// Op returns the operation (ARPRequest, ARPReply).
func (b ARP) Op() uint16 { return binary.BigEndian.Uint16(b[6:]) }

// SenderMAC returns the sender hardware address.
func (b ARP) SenderMAC() MAC { return MAC(b[8:14]) }

// SenderIP returns the sender protocol address.
func (b ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(b[14:18])) }

// TargetMAC returns the target hardware address.
func (b ARP) TargetMAC() MAC { return MAC(b[18:24]) }

// TargetIP returns the target protocol address.
func (b ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(b[24:28])) }

// SetOp sets the operation.
func (b ARP) SetOp(op uint16) { binary.BigEndian.PutUint16(b[6:], op) }

// SetSender sets the sender hardware and protocol addresses (an ip that is
// not IPv4 is written as 0.0.0.0).
func (b ARP) SetSender(mac MAC, ip netip.Addr) {
	copy(b[8:14], mac[:])
	a := addr4(ip)
	copy(b[14:18], a[:])
}

// SetTarget sets the target hardware and protocol addresses (an ip that is
// not IPv4 is written as 0.0.0.0).
func (b ARP) SetTarget(mac MAC, ip netip.Addr) {
	copy(b[18:24], mac[:])
	a := addr4(ip)
	copy(b[24:28], a[:])
}
