package netstack

import (
	"encoding/binary"
	"net/netip"
)

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
	// PartialChecksum: the UDP checksum field held only the pseudo-header
	// sum, as a local sender with TX checksum offload leaves it, and the
	// Parser accepted it (AcceptPartialChecksum). Count it.
	PartialChecksum bool

	buf        []byte // the frame as given, cap included, for Reply
	payloadOff int    // offset of the UDP payload in buf
}

// PayloadRoom returns the space from the start of the UDP payload to the
// end of the frame buffer (its capacity): where a handler may write the
// reply's payload before Reply. It overlaps the request payload, so read
// the request before writing the reply. Only meaningful for ClassUDP.
func (p *Packet) PayloadRoom() []byte { return p.buf[p.payloadOff:cap(p.buf)] }

// Parser holds the settings of Parse for one receive path; its zero value
// checks everything and serves every port. A Parser is a small value that
// Parse does not modify: one may be shared by goroutines.
type Parser struct {
	// Port is the UDP destination port served; 0 serves every port.
	Port uint16
	// AcceptPartialChecksum accepts a UDP checksum field that holds
	// exactly the pseudo-header sum of the datagram (the CHECKSUM_PARTIAL
	// pattern a local sender with TX checksum offload leaves on a veth)
	// and marks the Packet PartialChecksum; any other wrong checksum is
	// still ErrChecksum. Enable it only for frames from a virtual
	// interface: see "Partial checksums" in the package doc for why that
	// is safe and where it is not.
	AcceptPartialChecksum bool
}

// Parse reads the headers of an Ethernet frame into p and classifies it.
// UDP datagrams to port (any port when port is 0) are checked completely:
// lengths, the IPv4 header checksum, the UDP checksum. An error means the
// frame should be dropped and counted; p is then partly filled and its
// Class is ClassOther. Parse never allocates and never panics.
//
// frame's capacity beyond its length is the room Reply may use for a
// longer reply: slice it to the frame buffer (frame[:n:bufferSize]).
//
// Parse is (&Parser{Port: port}).Parse(frame, p).
func Parse(frame []byte, port uint16, p *Packet) error {
	ps := Parser{Port: port}
	return ps.Parse(frame, p)
}

// Parse is the package's Parse with the Parser's settings.
func (ps *Parser) Parse(frame []byte, p *Packet) error {
	port := ps.Port
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
		return p.parseIPv4(rest, l2, port, ps.AcceptPartialChecksum)
	case EtherTypeIPv6:
		return p.parseIPv6(rest, l2, port, ps.AcceptPartialChecksum)
	}
	return nil
}

func (p *Packet) parseIPv4(rest []byte, l2 int, port uint16, partialOK bool) error {
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
	if u.Checksum() != 0 {
		if err := p.checkUDP(u, ip.SourceAddress(), ip.DestinationAddress(), partialOK); err != nil {
			return err
		}
	}
	p.Class = ClassUDP
	return nil
}

// checkUDP verifies the UDP checksum of u, whose field is not 0; with
// partialOK, a field holding exactly the pseudo-header sum passes too and
// marks p.
func (p *Packet) checkUDP(u UDP, src, dst netip.Addr, partialOK bool) error {
	if u.IsChecksumValid(src, dst) {
		return nil
	}
	if partialOK && u.Checksum() == PseudoHeaderChecksum(ProtocolUDP, src, dst, uint32(len(u))) {
		p.PartialChecksum = true
		return nil
	}
	return ErrChecksum
}

func (p *Packet) parseIPv6(rest []byte, l2 int, port uint16, partialOK bool) error {
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
	if err := p.checkUDP(u, ip.SourceAddress(), ip.DestinationAddress(), partialOK); err != nil {
		return err
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
