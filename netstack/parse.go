package netstack

import "encoding/binary"

// Class is what Parse found in a frame.
type Class uint8

const (
	// ClassOther: anything this runtime does not serve (another EtherType,
	// another IP protocol, UDP to another port, ARP that is not
	// Ethernet/IPv4, 802.1ad double tags).
	ClassOther Class = iota
	// ClassUDP: a whole, checksum-verified UDP datagram to our port.
	ClassUDP
	// ClassARP: an Ethernet/IPv4 ARP packet.
	ClassARP
)

// Packet holds the views Parse found in a frame. Views that do not apply
// are nil. All alias the frame.
type Packet struct {
	Class Class
	// Frame is the frame without trailing Ethernet padding: link header
	// plus the IP total length (the whole input for ARP and ClassOther).
	Frame []byte
	// Ethernet is the link header, the 802.1Q tag included.
	Ethernet Ethernet
	// VLAN is the 802.1Q tag, nil when untagged.
	VLAN VLAN
	// EtherType is the type after any VLAN tag.
	EtherType uint16
	ARP       ARP
	IPv4      IPv4 // header with options, then the rest of the IP packet
	IPv6      IPv6
	UDP       UDP // header, then payload up to the UDP length
	// Payload is the UDP payload.
	Payload []byte

	buf        []byte // the frame as given, cap included, for Reply
	payloadOff int    // offset of the UDP payload in buf
}

// PayloadRoom returns the space from the start of the UDP payload to the
// end of the frame buffer (its capacity): where a handler may write the
// reply's payload before Reply. It overlaps the request payload, so read
// the request before writing the reply. Only meaningful for ClassUDP.
func (p *Packet) PayloadRoom() []byte { return p.buf[p.payloadOff:cap(p.buf)] }

// Parse reads the headers of an Ethernet frame into p and classifies it.
// UDP datagrams to port (any port when port is 0) are checked completely:
// lengths, the IPv4 header checksum, the UDP checksum. An error means the
// frame should be dropped and counted; p is then partly filled and its
// Class is ClassOther. Parse never allocates and never panics.
//
// frame's capacity beyond its length is the room Reply may use for a
// longer reply: slice it to the frame buffer (frame[:n:bufferSize]).
func Parse(frame []byte, port uint16, p *Packet) error {
	*p = Packet{buf: frame, Frame: frame}
	eth := Ethernet(frame)
	if !eth.IsValid() {
		return ErrTruncated
	}
	l2 := EthernetLen
	etherType := eth.Type()
	if etherType == EtherTypeVLAN {
		if len(frame) < EthernetLen+VLANTagLen {
			return ErrTruncated
		}
		p.VLAN = VLAN(frame[EthernetLen : EthernetLen+VLANTagLen])
		etherType = p.VLAN.Type()
		l2 += VLANTagLen
	}
	p.Ethernet = eth[:l2]
	p.EtherType = etherType
	rest := frame[l2:]
	switch etherType {
	case EtherTypeARP:
		if len(rest) < ARPLen {
			return ErrTruncated
		}
		if a := ARP(rest[:ARPLen]); a.IsValid() {
			p.ARP = a
			p.Class = ClassARP
		}
		return nil
	case EtherTypeIPv4:
		return p.parseIPv4(rest, l2, port)
	case EtherTypeIPv6:
		return p.parseIPv6(rest, l2, port)
	}
	return nil
}

func (p *Packet) parseIPv4(rest []byte, l2 int, port uint16) error {
	if len(rest) < IPv4MinimumSize {
		return ErrTruncated
	}
	ip := IPv4(rest)
	if rest[ipv4VersIHL]>>4 != 4 {
		return ErrVersion
	}
	hlen := ip.HeaderLength()
	total := int(ip.TotalLength())
	switch {
	case hlen < IPv4MinimumSize:
		return ErrLength
	case hlen > len(rest):
		return ErrTruncated
	case total < hlen:
		return ErrLength
	case total > len(rest):
		return ErrTruncated
	}
	if !ip.IsChecksumValid() {
		return ErrChecksum
	}
	ip = ip[:total:total]
	p.IPv4 = ip
	p.Frame = p.buf[:l2+total]
	if ip.Protocol() != ProtocolUDP {
		return nil
	}
	if ip.IsFragment() {
		return ErrFragment
	}
	u, err := p.parseUDP(ip[hlen:], l2+hlen, port)
	if err != nil || u == nil {
		return err
	}
	if c := u.Checksum(); c != 0 && !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress()) {
		return ErrChecksum
	}
	p.Class = ClassUDP
	return nil
}

func (p *Packet) parseIPv6(rest []byte, l2 int, port uint16) error {
	if len(rest) < IPv6MinimumSize {
		return ErrTruncated
	}
	ip := IPv6(rest)
	if rest[0]>>4 != 6 {
		return ErrVersion
	}
	total := IPv6MinimumSize + int(ip.PayloadLength())
	if total > len(rest) {
		return ErrTruncated
	}
	ip = ip[:total:total]
	p.IPv6 = ip
	p.Frame = p.buf[:l2+total]
	switch nh := ip.NextHeader(); {
	case nh == ipv6Fragment:
		return ErrFragment
	case isIPv6ExtensionHeader(nh):
		return ErrExtensionHeader
	case nh != ProtocolUDP:
		return nil
	}
	u, err := p.parseUDP(ip[IPv6MinimumSize:], l2+IPv6MinimumSize, port)
	if err != nil || u == nil {
		return err
	}
	if u.Checksum() == 0 {
		return ErrZeroChecksum
	}
	if !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress()) {
		return ErrChecksum
	}
	p.Class = ClassUDP
	return nil
}

// parseUDP checks the UDP header in ipPayload (at offset off of the frame)
// and fills p's UDP views when it is for port; it returns nil, nil for
// another port. Like Linux, it takes the UDP length as the datagram's end
// when it is shorter than the IP payload.
func (p *Packet) parseUDP(ipPayload []byte, off int, port uint16) (UDP, error) {
	if len(ipPayload) < UDPMinimumSize {
		return nil, ErrTruncated
	}
	u := UDP(ipPayload)
	n := int(binary.BigEndian.Uint16(ipPayload[udpLength:]))
	switch {
	case n < UDPMinimumSize:
		return nil, ErrLength
	case n > len(ipPayload):
		return nil, ErrTruncated
	}
	if port != 0 && u.DestinationPort() != port {
		return nil, nil
	}
	u = u[:n:n]
	p.UDP = u
	p.Payload = u[UDPMinimumSize:]
	p.payloadOff = off + UDPMinimumSize
	return u, nil
}
