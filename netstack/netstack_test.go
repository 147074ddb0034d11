package netstack_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/netstack"
)

func TestMain(m *testing.M) { leak.Main(m) }

var (
	macA = netstack.MAC{0x02, 0, 0, 0, 0, 0xa}
	macB = netstack.MAC{0x02, 0, 0, 0, 0, 0xb}
	v4A  = netip.MustParseAddr("10.0.0.1")
	v4B  = netip.MustParseAddr("10.0.0.2")
	v6A  = netip.MustParseAddr("fd00::1")
	v6B  = netip.MustParseAddr("fd00::2")
)

// frameSpec describes a frame for gopacketFrame, the reference encoder.
type frameSpec struct {
	v6       bool
	vlan     uint16 // 0: untagged
	options  []layers.IPv4Option
	srcPort  uint16
	dstPort  uint16
	payload  []byte
	mangle   func(b []byte) // applied after serialisation
	padTo    int            // Ethernet padding
	fragment bool
}

// gopacketFrame serialises a frame with gopacket, lengths and checksums
// computed by gopacket.
func gopacketFrame(t testing.TB, s frameSpec) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macA[:]), DstMAC: net.HardwareAddr(macB[:]), EthernetType: layers.EthernetTypeIPv4}
	ls := []gopacket.SerializableLayer{eth}
	if s.v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
	}
	if s.vlan != 0 {
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: s.vlan, Priority: 3, Type: eth.EthernetType})
		eth.EthernetType = layers.EthernetTypeDot1Q
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(s.srcPort), DstPort: layers.UDPPort(s.dstPort)}
	if s.v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: 0x10, FlowLabel: 0x12345, NextHeader: layers.IPProtocolUDP, HopLimit: 9, SrcIP: v6A.AsSlice(), DstIP: v6B.AsSlice()}
		udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TOS: 0x10, Id: 77, Flags: layers.IPv4DontFragment, TTL: 9, Protocol: layers.IPProtocolUDP, SrcIP: v4A.AsSlice(), DstIP: v4B.AsSlice(), Options: s.options}
		if s.fragment {
			ip.Flags = layers.IPv4MoreFragments
		}
		udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	}
	ls = append(ls, udp, gopacket.Payload(s.payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	b := append([]byte{}, buf.Bytes()...)
	for len(b) < s.padTo {
		b = append(b, 0)
	}
	if s.mangle != nil {
		s.mangle(b)
	}
	return b
}

// inBuffer copies frame into a 2 KiB buffer, as a UMEM frame would hold it.
func inBuffer(frame []byte) []byte {
	buf := make([]byte, 2048)
	return buf[:copy(buf, frame)]
}

func TestParseUDP(t *testing.T) {
	payload := []byte("GWIR request bytes")
	for _, s := range []frameSpec{
		{srcPort: 40000, dstPort: 9000, payload: payload},
		{v6: true, srcPort: 40000, dstPort: 9000, payload: payload},
		{vlan: 42, srcPort: 40000, dstPort: 9000, payload: payload},
		{vlan: 42, v6: true, srcPort: 40000, dstPort: 9000, payload: payload},
		{srcPort: 40000, dstPort: 9000, payload: payload, options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}},
		{srcPort: 40000, dstPort: 9000, payload: []byte("x"), padTo: 60},
		{srcPort: 40000, dstPort: 9000, payload: nil},
	} {
		frame := gopacketFrame(t, s)
		var p netstack.Packet
		if err := netstack.Parse(frame, 9000, &p); err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		if p.Class != netstack.ClassUDP || !bytes.Equal(p.Payload, s.payload) {
			t.Fatalf("%+v: class %d payload %q", s, p.Class, p.Payload)
		}
		if p.UDP.SourcePort() != 40000 || p.UDP.DestinationPort() != 9000 {
			t.Errorf("ports %d→%d", p.UDP.SourcePort(), p.UDP.DestinationPort())
		}
		if p.Ethernet.Source() != macA || p.Ethernet.Destination() != macB {
			t.Errorf("MACs %v→%v", p.Ethernet.Source(), p.Ethernet.Destination())
		}
		if s.vlan != 0 && (p.VLAN == nil || p.VLAN.ID() != s.vlan || p.VLAN.Priority() != 3) {
			t.Errorf("VLAN %x", []byte(p.VLAN))
		}
		if s.v6 {
			if p.IPv6.SourceAddress() != v6A || p.IPv6.DestinationAddress() != v6B || p.IPv6.HopLimit() != 9 || p.IPv6.FlowLabel() != 0x12345 || p.IPv6.TrafficClass() != 0x10 {
				t.Errorf("IPv6 header %x", []byte(p.IPv6[:40]))
			}
		} else if p.IPv4.SourceAddress() != v4A || p.IPv4.DestinationAddress() != v4B || p.IPv4.TTL() != 9 || p.IPv4.ID() != 77 || p.IPv4.TOS() != 0x10 {
			t.Errorf("IPv4 header %x", []byte(p.IPv4[:20]))
		}
		if s.padTo != 0 && len(p.Frame) >= len(frame) {
			t.Errorf("Ethernet padding not trimmed: %d of %d", len(p.Frame), len(frame))
		}
		// Another port: not ours, not checked, not an error.
		if err := netstack.Parse(frame, 9001, &p); err != nil || p.Class != netstack.ClassOther {
			t.Errorf("other port: class %d, %v", p.Class, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	pl := []byte("payload")
	udp4 := func(m func(b []byte)) []byte {
		return gopacketFrame(t, frameSpec{srcPort: 1, dstPort: 9000, payload: pl, mangle: m})
	}
	udp6 := func(m func(b []byte)) []byte {
		return gopacketFrame(t, frameSpec{v6: true, srcPort: 1, dstPort: 9000, payload: pl, mangle: m})
	}
	const ip, u4, u6 = 14, 34, 54 // offsets of IP header, UDP header (v4, v6)
	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"13 bytes", make([]byte, 13), netstack.ErrTruncated},
		{"vlan cut", append(make([]byte, 12), 0x81, 0x00, 0), netstack.ErrTruncated},
		{"ipv4 cut", udp4(nil)[:ip+19], netstack.ErrTruncated},
		{"ipv4 version 5", udp4(func(b []byte) { b[ip] = 0x55 }), netstack.ErrVersion},
		{"ipv4 IHL 4", udp4(func(b []byte) { b[ip] = 0x44 }), netstack.ErrLength},
		{"ipv4 total < IHL", udp4(func(b []byte) { binary.BigEndian.PutUint16(b[ip+2:], 19) }), netstack.ErrLength},
		{"ipv4 total > frame", udp4(func(b []byte) { binary.BigEndian.PutUint16(b[ip+2:], 200) }), netstack.ErrTruncated},
		{"ipv4 header checksum", udp4(func(b []byte) { b[ip+10] ^= 1 }), netstack.ErrChecksum},
		{"udp checksum", udp4(func(b []byte) { b[u4+8] ^= 1 }), netstack.ErrChecksum},
		{"udp length 7", udp4(func(b []byte) { binary.BigEndian.PutUint16(b[u4+4:], 7) }), netstack.ErrLength},
		{"udp length > ip", udp4(func(b []byte) { binary.BigEndian.PutUint16(b[u4+4:], 100) }), netstack.ErrTruncated},
		{"ipv4 fragment", gopacketFrame(t, frameSpec{srcPort: 1, dstPort: 9000, payload: pl, fragment: true}), netstack.ErrFragment},
		{"ipv6 cut", udp6(nil)[:ip+39], netstack.ErrTruncated},
		{"ipv6 version 4", udp6(func(b []byte) { b[ip] = 0x40 }), netstack.ErrVersion},
		{"ipv6 payload length", udp6(func(b []byte) { binary.BigEndian.PutUint16(b[ip+4:], 100) }), netstack.ErrTruncated},
		{"ipv6 zero checksum", udp6(func(b []byte) { b[u6+6], b[u6+7] = 0, 0 }), netstack.ErrZeroChecksum},
		{"ipv6 checksum", udp6(func(b []byte) { b[u6+14] ^= 0x80 }), netstack.ErrChecksum},
		{"ipv6 fragment header", udp6(func(b []byte) { b[ip+6] = 44 }), netstack.ErrFragment},
		{"ipv6 hop-by-hop", udp6(func(b []byte) { b[ip+6] = 0 }), netstack.ErrExtensionHeader},
		{"ipv6 routing", udp6(func(b []byte) { b[ip+6] = 43 }), netstack.ErrExtensionHeader},
	}
	for _, tt := range tests {
		var p netstack.Packet
		err := netstack.Parse(tt.frame, 9000, &p)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
		if p.Class != netstack.ClassOther {
			t.Errorf("%s: class %d with an error", tt.name, p.Class)
		}
	}
	// A UDP checksum of 0 means "none" on IPv4.
	var p netstack.Packet
	if err := netstack.Parse(udp4(func(b []byte) { b[u4+6], b[u4+7] = 0, 0 }), 9000, &p); err != nil || p.Class != netstack.ClassUDP {
		t.Errorf("IPv4 without UDP checksum: class %d, %v", p.Class, err)
	}
	// Other protocols are not errors.
	tcp := udp4(func(b []byte) {
		b[ip+9] = 6
		binary.BigEndian.PutUint16(b[ip+10:], 0)
		binary.BigEndian.PutUint16(b[ip+10:], ^netstack.Checksum(b[ip:ip+20], 0))
	})
	if err := netstack.Parse(tcp, 9000, &p); err != nil || p.Class != netstack.ClassOther || p.IPv4 == nil {
		t.Errorf("TCP: class %d, %v", p.Class, err)
	}
	if err := netstack.Parse(udp6(func(b []byte) { b[ip+6] = 58 }), 9000, &p); err != nil || p.Class != netstack.ClassOther {
		t.Errorf("ICMPv6: class %d, %v", p.Class, err)
	}
	unknown := append(make([]byte, 12), 0x88, 0xb5, 1, 2, 3)
	if err := netstack.Parse(unknown, 9000, &p); err != nil || p.Class != netstack.ClassOther {
		t.Errorf("unknown EtherType: class %d, %v", p.Class, err)
	}
}

// refFrame is what gopacket's decoders found in a frame.
type refFrame struct {
	eth    layers.Ethernet
	dot1q  layers.Dot1Q
	ip4    layers.IPv4
	ip6    layers.IPv6
	udp    layers.UDP
	pl     gopacket.Payload
	layers []gopacket.LayerType
	err    error
	clean  bool // Ethernet, at most one Dot1Q, IPv4 or IPv6, UDP, not truncated
	v6     bool
	tagged bool
}

// decodeRef decodes frame with gopacket's Ethernet, Dot1Q, IPv4, IPv6 and UDP
// decoders only (a full gopacket.NewPacket would go on into application
// protocols chosen by port number and fail there).
func decodeRef(frame []byte) *refFrame {
	r := &refFrame{}
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &r.eth, &r.dot1q, &r.ip4, &r.ip6, &r.udp, &r.pl)
	// UDP's next layer is guessed from the port (DNS, DHCP, …): stop there.
	parser.IgnoreUnsupported = true
	r.err = parser.DecodeLayers(frame, &r.layers)
	want := []gopacket.LayerType{layers.LayerTypeEthernet}
	if len(r.layers) > 1 && r.layers[1] == layers.LayerTypeDot1Q {
		want = append(want, layers.LayerTypeDot1Q)
		r.tagged = true
	}
	if len(r.layers) > len(want) && r.layers[len(want)] == layers.LayerTypeIPv6 {
		r.v6 = true
		want = append(want, layers.LayerTypeIPv6)
	} else {
		want = append(want, layers.LayerTypeIPv4)
	}
	want = append(want, layers.LayerTypeUDP)
	got := r.layers
	if len(got) == len(want)+1 && got[len(want)] == gopacket.LayerTypePayload {
		got = got[:len(want)]
	}
	r.clean = r.err == nil && !parser.Truncated && len(got) == len(want)
	for i := range got {
		if r.clean && got[i] != want[i] {
			r.clean = false
		}
	}
	return r
}

func (r *refFrame) network() gopacket.NetworkLayer {
	if r.v6 {
		return &r.ip6
	}
	return &r.ip4
}

// checkWithGopacket decodes frame with gopacket and checks that it is a UDP
// datagram with valid checksums (recomputed by gopacket and by a naive sum).
func checkWithGopacket(t testing.TB, frame []byte) (*layers.Ethernet, gopacket.NetworkLayer, *layers.UDP) {
	t.Helper()
	r := decodeRef(frame)
	if !r.clean {
		t.Fatalf("gopacket does not decode Ethernet/IP/UDP cleanly (layers %v): %v\n%x", r.layers, r.err, frame)
	}
	if !r.v6 && naiveChecksum(r.ip4.Contents) != 0xFFFF {
		t.Fatalf("IPv4 header checksum invalid")
	}
	want := referenceUDPChecksum(t, r.network(), &r.udp)
	if r.udp.Checksum != want && !(want == 0 && r.udp.Checksum == 0xFFFF) {
		t.Fatalf("UDP checksum %#04x, gopacket computes %#04x", r.udp.Checksum, want)
	}
	return &r.eth, r.network(), &r.udp
}

// referenceUDPChecksum has gopacket compute the checksum of a decoded UDP
// layer, by serialising a copy of it.
func referenceUDPChecksum(t testing.TB, nl gopacket.NetworkLayer, udp *layers.UDP) uint16 {
	t.Helper()
	u := &layers.UDP{SrcPort: udp.SrcPort, DstPort: udp.DstPort, Length: udp.Length}
	switch ip := nl.(type) {
	case *layers.IPv4:
		u.SetNetworkLayerForChecksum(ip)
	case *layers.IPv6:
		u.SetNetworkLayerForChecksum(ip)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, u, gopacket.Payload(udp.Payload)); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint16(buf.Bytes()[6:])
}

// naiveChecksum is RFC 1071 written the obvious way, as a reference.
func naiveChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xFFFF {
		s = s>>16 + s&0xFFFF
	}
	return uint16(s)
}

func TestReply(t *testing.T) {
	for _, s := range []frameSpec{
		{srcPort: 40000, dstPort: 9000, payload: []byte("request")},
		{v6: true, srcPort: 40000, dstPort: 9000, payload: []byte("request")},
		{vlan: 7, srcPort: 40000, dstPort: 9000, payload: []byte("request")},
		{srcPort: 40000, dstPort: 9000, payload: []byte("request"), options: []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}, {OptionType: 0}}},
		{srcPort: 40000, dstPort: 9000, payload: []byte("r"), padTo: 64},
	} {
		for _, n := range []int{0, 1, 7, 100, 1001} {
			frame := inBuffer(gopacketFrame(t, s))
			var p netstack.Packet
			if err := netstack.Parse(frame, 9000, &p); err != nil {
				t.Fatal(err)
			}
			room := p.PayloadRoom()
			for i := 0; i < n; i++ {
				room[i] = byte(i * 7)
			}
			reply, err := netstack.Reply(&p, n)
			if err != nil {
				t.Fatalf("Reply(%d): %v", n, err)
			}
			if &reply[0] != &frame[0] {
				t.Fatal("reply not built in place")
			}
			eth, nl, udp := checkWithGopacket(t, reply)
			if !bytes.Equal(eth.SrcMAC, macB[:]) || !bytes.Equal(eth.DstMAC, macA[:]) {
				t.Errorf("MACs %v→%v", eth.SrcMAC, eth.DstMAC)
			}
			src, dst := nl.NetworkFlow().Endpoints()
			wantSrc, wantDst := v4B, v4A
			if s.v6 {
				wantSrc, wantDst = v6B, v6A
			}
			if src.String() != wantSrc.String() || dst.String() != wantDst.String() {
				t.Errorf("addresses %v→%v", src, dst)
			}
			if udp.SrcPort != 9000 || udp.DstPort != 40000 || int(udp.Length) != 8+n || !bytes.Equal(udp.Payload, room[:n]) {
				t.Errorf("UDP %d→%d len %d", udp.SrcPort, udp.DstPort, udp.Length)
			}
			// The reply parses as ours on the other side, too.
			var q netstack.Packet
			if err := netstack.Parse(reply, 40000, &q); err != nil || q.Class != netstack.ClassUDP {
				t.Errorf("reply does not parse: %v", err)
			}
		}
	}
}

func TestReplyRefuses(t *testing.T) {
	frame := gopacketFrame(t, frameSpec{srcPort: 1, dstPort: 9000, payload: []byte("abc")})
	var p netstack.Packet
	if err := netstack.Parse(frame[:len(frame):len(frame)], 9000, &p); err != nil {
		t.Fatal(err)
	}
	if _, err := netstack.Reply(&p, len(frame)); err != netstack.ErrBufferTooSmall {
		t.Errorf("reply past the capacity: %v", err)
	}
	if _, err := netstack.Reply(&p, -1); err != netstack.ErrNotUDP {
		t.Errorf("negative length: %v", err)
	}
	netstack.Parse(frame, 9001, &p)
	if _, err := netstack.Reply(&p, 0); err != netstack.ErrNotUDP {
		t.Errorf("reply to another port's packet: %v", err)
	}
	big := make([]byte, 70000)
	copy(big, frame)
	netstack.Parse(big[:len(frame)], 9000, &p)
	if _, err := netstack.Reply(&p, 65535-28+1); err != netstack.ErrTooLarge {
		t.Errorf("reply over 65535 bytes of IPv4: %v", err)
	}
}

func TestBuildUDP(t *testing.T) {
	payload := []byte("fresh request")
	for _, f := range []netstack.UDPFields{
		{SrcMAC: macA, DstMAC: macB, Src: netip.AddrPortFrom(v4A, 5), Dst: netip.AddrPortFrom(v4B, 9000), IPv4Flags: netstack.IPv4FlagDontFragment},
		{SrcMAC: macA, DstMAC: macB, Src: netip.AddrPortFrom(v6A, 5), Dst: netip.AddrPortFrom(v6B, 9000), FlowLabel: 99, TOS: 4, TTL: 3},
		{SrcMAC: macA, DstMAC: macB, Tagged: true, VLANTCI: 0x2005, Src: netip.AddrPortFrom(v4A, 5), Dst: netip.AddrPortFrom(v4B, 9000)},
	} {
		dst := make([]byte, 256)
		frame, err := netstack.BuildUDP(dst, &f, payload)
		if err != nil {
			t.Fatal(err)
		}
		if len(frame) != f.HeaderLen()+len(payload) {
			t.Fatalf("frame %d bytes, header %d", len(frame), f.HeaderLen())
		}
		eth, nl, udp := checkWithGopacket(t, frame)
		if !bytes.Equal(eth.SrcMAC, macA[:]) || !bytes.Equal(eth.DstMAC, macB[:]) || udp.SrcPort != 5 || udp.DstPort != 9000 || !bytes.Equal(udp.Payload, payload) {
			t.Errorf("%+v: gopacket sees %v→%v %d→%d %q", f, eth.SrcMAC, eth.DstMAC, udp.SrcPort, udp.DstPort, udp.Payload)
		}
		src, dst2 := nl.NetworkFlow().Endpoints()
		if src.String() != f.Src.Addr().String() || dst2.String() != f.Dst.Addr().String() {
			t.Errorf("addresses %v→%v", src, dst2)
		}
		// In place: payload already at HeaderLen.
		copy(dst[f.HeaderLen():], "in place!")
		frame, err = netstack.BuildUDP(dst, &f, dst[f.HeaderLen():f.HeaderLen()+9])
		if err != nil {
			t.Fatal(err)
		}
		if _, _, udp := checkWithGopacket(t, frame); string(udp.Payload) != "in place!" {
			t.Errorf("in-place payload %q", udp.Payload)
		}
	}
	mixed := netstack.UDPFields{Src: netip.AddrPortFrom(v4A, 1), Dst: netip.AddrPortFrom(v6B, 1)}
	if _, err := netstack.BuildUDP(make([]byte, 100), &mixed, nil); err != netstack.ErrAddress {
		t.Errorf("mixed families: %v", err)
	}
	f := netstack.UDPFields{Src: netip.AddrPortFrom(v4A, 1), Dst: netip.AddrPortFrom(v4B, 1)}
	if _, err := netstack.BuildUDP(make([]byte, 50), &f, make([]byte, 10)); err != netstack.ErrBufferTooSmall {
		t.Errorf("small buffer: %v", err)
	}
}

func TestARP(t *testing.T) {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macA[:]), DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: macA[:], SourceProtAddress: v4A.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: v4B.AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		t.Fatal(err)
	}
	frame := append(append([]byte{}, buf.Bytes()...), make([]byte, 18)...) // padded to 60
	var p netstack.Packet
	if err := netstack.Parse(frame, 9000, &p); err != nil || p.Class != netstack.ClassARP {
		t.Fatalf("class %d, %v", p.Class, err)
	}
	if p.ARP.Op() != netstack.ARPRequest || p.ARP.SenderIP() != v4A || p.ARP.TargetIP() != v4B || p.ARP.SenderMAC() != macA {
		t.Fatalf("ARP %x", []byte(p.ARP))
	}
	reply, err := netstack.ReplyARP(&p, macB)
	if err != nil {
		t.Fatal(err)
	}
	pkt := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.DecodeOptions{})
	got, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
	if got == nil || got.Operation != layers.ARPReply || !bytes.Equal(got.SourceHwAddress, macB[:]) || !bytes.Equal(got.SourceProtAddress, v4B.AsSlice()) ||
		!bytes.Equal(got.DstHwAddress, macA[:]) || !bytes.Equal(got.DstProtAddress, v4A.AsSlice()) {
		t.Fatalf("gopacket sees %+v", got)
	}
	if _, err := netstack.ReplyARP(&p, macB); err != netstack.ErrNotARPRequest {
		t.Errorf("reply to a reply: %v", err)
	}
}

func TestChecksumIncremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5000 {
		hdr := make([]byte, 20)
		for i := range hdr {
			hdr[i] = byte(rng.Uint32())
		}
		binary.BigEndian.PutUint16(hdr[10:], 0)
		binary.BigEndian.PutUint16(hdr[10:], ^netstack.Checksum(hdr, 0))
		i := 2 * rng.IntN(10)
		if i == 10 {
			continue
		}
		old := binary.BigEndian.Uint16(hdr[i:])
		nw := uint16(rng.Uint32())
		if rng.IntN(4) == 0 {
			nw = 0 // the RFC 1624 corner cases involve zeros
		}
		binary.BigEndian.PutUint16(hdr[i:], nw)
		inc := netstack.ChecksumUpdate16(binary.BigEndian.Uint16(hdr[10:]), old, nw)
		binary.BigEndian.PutUint16(hdr[10:], inc)
		if netstack.Checksum(hdr, 0) != 0xFFFF {
			t.Fatalf("incremental update of word %d from %#x to %#x left a bad checksum", i/2, old, nw)
		}
	}
	// The classic pitfall (RFC 1624 section 3): eqn. 2 gives 0x0000 here,
	// eqn. 3 the right 0xFFFF.
	if got := netstack.ChecksumUpdate16(0xDD2F, 0x5555, 0x3285); got != 0x0000 && got != 0xFFFF {
		t.Fatalf("got %#x", got)
	}
}

func TestChecksumMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := netstack.Checksum(b, 0), naiveChecksum(b); got != want && !(got == 0xFFFF && want == 0) && !(got == 0 && want == 0xFFFF) {
			t.Fatalf("%d bytes: %#x, naive %#x", n, got, want)
		}
	}
}

func TestIPv4Rewrite(t *testing.T) {
	frame := gopacketFrame(t, frameSpec{srcPort: 1, dstPort: 9000, payload: []byte("x")})
	var p netstack.Packet
	if err := netstack.Parse(frame, 9000, &p); err != nil {
		t.Fatal(err)
	}
	p.IPv4.SetTTLWithChecksumUpdate(1)
	p.IPv4.SetDestinationAddressWithChecksumUpdate(netip.MustParseAddr("192.0.2.9"))
	if !p.IPv4.IsChecksumValid() || p.IPv4.CalculateChecksum() != p.IPv4.Checksum() {
		t.Fatal("incremental rewrites broke the header checksum")
	}
}
