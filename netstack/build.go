package netstack

import "net/netip"

// maxIPv6UDPPayload bounds a UDP payload by the IPv6 payload length (no
// jumbograms); over IPv4 the total length bounds it further.
const maxIPv6UDPPayload = 0xFFFF - UDPMinimumSize

// Reply turns the frame of p, a packet Parse classified as ClassUDP, into
// its reply in the same buffer, and returns the reply frame. The reply's
// payload (payloadLen bytes) must already be at the start of
// p.PayloadRoom(); it may be longer or shorter than the request's, up to
// the buffer's capacity. Reply swaps the MAC addresses, the IP addresses
// and the ports, sets the TTL or hop limit to DefaultTTL, sets every length
// and computes the IPv4 header and UDP checksums. The VLAN tag, TOS or
// traffic class, flow label and IPv4 id and flags are kept; IPv4 options
// are overwritten with NOPs, since echoing a route option would be wrong.
// After Reply, p still describes the request's headers, not the reply.
func Reply(p *Packet, payloadLen int) ([]byte, error) {
	if p.Class != ClassUDP || payloadLen < 0 {
		return nil, ErrNotUDP
	}
	end := p.payloadOff + payloadLen
	if end > cap(p.buf) || end < p.payloadOff {
		return nil, ErrBufferTooSmall
	}
	frame := p.buf[:end]
	udpLen := UDPMinimumSize + payloadLen
	var src, dst netip.Addr
	switch {
	case p.IPv4 != nil:
		ipStart := len(p.Ethernet)
		ip := IPv4(frame[ipStart:])
		hlen := ip.HeaderLength()
		total := hlen + udpLen
		if total > 0xFFFF {
			return nil, ErrTooLarge
		}
		ip.SwapAddresses()
		if hlen == IPv4MinimumSize {
			// Addresses swapped keep the sum: patch only TTL and length.
			ip.SetTTLWithChecksumUpdate(DefaultTTL)
			ip.SetTotalLengthWithChecksumUpdate(uint16(total))
		} else {
			opts := ip[IPv4MinimumSize:hlen]
			for i := range opts {
				opts[i] = ipv4OptionNOP
			}
			ip.SetTTL(DefaultTTL)
			ip.SetTotalLength(uint16(total))
			ip.SetChecksum(ip.CalculateChecksum())
		}
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	case p.IPv6 != nil:
		if udpLen > 0xFFFF {
			return nil, ErrTooLarge
		}
		ip := IPv6(frame[len(p.Ethernet):])
		ip.SwapAddresses()
		ip.SetHopLimit(DefaultTTL)
		ip.SetPayloadLength(uint16(udpLen))
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	default:
		return nil, ErrNotUDP
	}
	Ethernet(frame).SwapAddresses()
	u := UDP(frame[p.payloadOff-UDPMinimumSize:])
	u.SwapPorts()
	u.SetLength(uint16(udpLen))
	u.SetChecksum(u.CalculateChecksum(src, dst))
	return frame, nil
}

// UDPFields describe a UDP frame for BuildUDP.
type UDPFields struct {
	// SrcMAC is ours; DstMAC the neighbour's: the peer on the same link,
	// or the gateway.
	SrcMAC, DstMAC MAC
	// Tagged adds an 802.1Q tag with VLANTCI.
	Tagged  bool
	VLANTCI uint16
	// Src and Dst: both IPv4 or both IPv6.
	Src, Dst netip.AddrPort
	// TTL (hop limit on IPv6); 0 means DefaultTTL.
	TTL uint8
	// TOS (traffic class on IPv6).
	TOS uint8
	// IPv4ID and IPv4Flags (e.g. IPv4FlagDontFragment) go to the IPv4
	// header; FlowLabel to the IPv6 header.
	IPv4ID    uint16
	IPv4Flags uint16
	FlowLabel uint32
}

// HeaderLen returns where BuildUDP puts the payload: the size of the
// Ethernet, VLAN, IP and UDP headers (0 for mixed address families).
func (f *UDPFields) HeaderLen() int {
	n := EthernetLen + UDPMinimumSize
	if f.Tagged {
		n += VLANTagLen
	}
	switch {
	case f.Src.Addr().Is4() && f.Dst.Addr().Is4():
		return n + IPv4MinimumSize
	case f.Src.Addr().Is6() && f.Dst.Addr().Is6():
		return n + IPv6MinimumSize
	}
	return 0
}

// BuildUDP writes a frame described by f with the given payload into dst
// and returns it, a prefix of dst. The payload is copied to
// dst[f.HeaderLen():] unless it is already there (write it there first to
// avoid the copy). IPv4 headers have no options; checksums are computed.
func BuildUDP(dst []byte, f *UDPFields, payload []byte) ([]byte, error) {
	hl := f.HeaderLen()
	if hl == 0 {
		return nil, ErrAddress
	}
	v4 := f.Src.Addr().Is4()
	if len(payload) > maxIPv6UDPPayload || v4 && IPv4MinimumSize+UDPMinimumSize+len(payload) > 0xFFFF {
		return nil, ErrTooLarge
	}
	end := hl + len(payload)
	if end > len(dst) {
		return nil, ErrBufferTooSmall
	}
	frame := dst[:end]
	copy(frame[hl:], payload)
	eth := Ethernet(frame)
	eth.SetDestination(f.DstMAC)
	eth.SetSource(f.SrcMAC)
	l2 := EthernetLen
	etherType := EtherTypeIPv6
	if v4 {
		etherType = EtherTypeIPv4
	}
	if f.Tagged {
		eth.SetType(EtherTypeVLAN)
		vlan := VLAN(frame[EthernetLen:])
		vlan.SetTCI(f.VLANTCI)
		vlan.SetType(etherType)
		l2 += VLANTagLen
	} else {
		eth.SetType(etherType)
	}
	ttl := f.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	udpLen := UDPMinimumSize + len(payload)
	src, dstAddr := f.Src.Addr(), f.Dst.Addr()
	var u UDP
	if v4 {
		ip := IPv4(frame[l2:])
		ip.Encode(&IPv4Fields{
			TOS:         f.TOS,
			TotalLength: uint16(IPv4MinimumSize + udpLen),
			ID:          f.IPv4ID,
			Flags:       f.IPv4Flags &^ (IPv4FlagMoreFragments | ipv4FragOffsetMask),
			TTL:         ttl,
			Protocol:    ProtocolUDP,
			Src:         src,
			Dst:         dstAddr,
		})
		u = UDP(frame[l2+IPv4MinimumSize:])
	} else {
		ip := IPv6(frame[l2:])
		ip.SetTrafficClassFlowLabel(f.TOS, f.FlowLabel)
		ip.SetPayloadLength(uint16(udpLen))
		ip.SetNextHeader(ProtocolUDP)
		ip.SetHopLimit(ttl)
		ip.SetSourceAddress(src)
		ip.SetDestinationAddress(dstAddr)
		u = UDP(frame[l2+IPv6MinimumSize:])
	}
	u.SetSourcePort(f.Src.Port())
	u.SetDestinationPort(f.Dst.Port())
	u.SetLength(uint16(udpLen))
	u.SetChecksum(u.CalculateChecksum(src, dstAddr))
	return frame, nil
}

// ReplyARP turns p, a ClassARP request, into the reply that says "ip is at
// mac" in the same buffer and returns the reply frame. The caller decides
// whether the request's target address is one it answers for.
func ReplyARP(p *Packet, mac MAC) ([]byte, error) {
	if p.Class != ClassARP || p.ARP.Op() != ARPRequest {
		return nil, ErrNotARPRequest
	}
	a := p.ARP
	asker, askerIP, wanted := a.SenderMAC(), a.SenderIP(), a.TargetIP()
	a.SetOp(ARPReply)
	a.SetSender(mac, wanted)
	a.SetTarget(asker, askerIP)
	p.Ethernet.SetDestination(asker)
	p.Ethernet.SetSource(mac)
	end := len(p.Ethernet) + ARPLen
	return p.buf[:end], nil
}
