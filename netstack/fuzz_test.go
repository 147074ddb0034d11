package netstack_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/zerohop/zerohop/netstack"
)

// FuzzParse: no frame makes Parse panic. Where gopacket decodes
// Ethernet/(802.1Q)/IPv4-or-IPv6/UDP cleanly, Parse finds the same fields,
// and its checksum verdict matches gopacket's recomputation; the reply built
// in place from an accepted frame decodes in gopacket with valid checksums.
//
// Known, intended disagreements, skipped here and documented in
// docs/protocol.md: an IPv4 total length of 0 (gopacket assumes TSO and
// takes the frame length; we reject), a UDP length of 0 (gopacket assumes a
// jumbogram; we reject), IPv6 with a hop-by-hop header (gopacket walks it;
// we reject extension headers), an IP version nibble that does not match
// the EtherType (gopacket does not look; we reject), 802.1ad tags (gopacket
// decodes them; we classify them as other). A bad IPv4 header checksum,
// which gopacket does not check, is compared with a naive recomputation.
func FuzzParse(f *testing.F) {
	pl := []byte("GWIR\x01\x00\x00\x01")
	f.Add(gopacketFrame(f, frameSpec{srcPort: 40000, dstPort: 9000, payload: pl}))                                                                                            // IPv4/UDP
	f.Add(gopacketFrame(f, frameSpec{v6: true, srcPort: 40000, dstPort: 9000, payload: pl}))                                                                                  // IPv6/UDP
	f.Add(gopacketFrame(f, frameSpec{vlan: 100, srcPort: 40000, dstPort: 9000, payload: pl}))                                                                                 // 802.1Q IPv4/UDP
	f.Add(gopacketFrame(f, frameSpec{vlan: 100, v6: true, srcPort: 40000, dstPort: 9000, payload: pl}))                                                                       // 802.1Q IPv6/UDP
	f.Add(gopacketFrame(f, frameSpec{srcPort: 1, dstPort: 2, payload: pl, options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}})) // IPv4 options
	f.Add(gopacketFrame(f, frameSpec{srcPort: 1, dstPort: 2, payload: pl, fragment: true}))                                                                                   // IPv4 fragment
	f.Add(gopacketFrame(f, frameSpec{srcPort: 1, dstPort: 2, payload: pl, mangle: func(b []byte) { b[40], b[41] = 0, 0 }}))                                                   // IPv4 without UDP checksum
	f.Add(gopacketFrame(f, frameSpec{v6: true, srcPort: 1, dstPort: 2, payload: pl, mangle: func(b []byte) { b[60], b[61] = 0, 0 }}))                                         // IPv6 without UDP checksum: rejected
	f.Add(gopacketFrame(f, frameSpec{srcPort: 1, dstPort: 2, payload: pl, mangle: func(b []byte) { b[45] ^= 0xff }}))                                                         // bad UDP checksum
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0xa, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0xa, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2}) // ARP request
	f.Add([]byte{1, 2, 3})                                                                                                                                                    // runt
	f.Add(gopacketFrame(f, frameSpec{srcPort: 40000, dstPort: 9000, payload: pl, mangle: partial(false, 0)}))                                                                 // IPv4, CHECKSUM_PARTIAL pattern
	f.Add(gopacketFrame(f, frameSpec{v6: true, srcPort: 40000, dstPort: 9000, payload: pl, mangle: partial(true, 0)}))                                                        // IPv6, CHECKSUM_PARTIAL pattern
	f.Add(gopacketFrame(f, frameSpec{srcPort: 40000, dstPort: 9000, payload: pl, mangle: partial(false, 1)}))                                                                 // IPv4, pseudo sum off by one
	f.Fuzz(func(t *testing.T, frame []byte) {
		// Parse into a buffer with room after the frame, as a UMEM frame has.
		buf := make([]byte, len(frame)+256)
		copy(buf, frame)
		in := buf[:len(frame)]
		var p netstack.Packet
		err := netstack.Parse(in, 0, &p)
		if err != nil {
			var e netstack.Error
			if !errors.As(err, &e) || e.Reason() >= int(netstack.NumReasons) || p.Class != netstack.ClassOther {
				t.Fatalf("error %v (class %d) is not a netstack.Error", err, p.Class)
			}
		}
		if !bytes.Equal(in, frame) {
			t.Fatal("Parse modified the frame")
		}
		ref := decodeRef(frame)
		if ref.clean && !knownDisagreement(frame, ref) {
			compareWithGopacket(t, frame, ref, &p, err)
		}
		checkPartialOption(t, frame, ref, &p, err)
		if err == nil && p.Class == netstack.ClassUDP {
			n := len(frame) % 200
			for i := range n {
				p.PayloadRoom()[i] = byte(i)
			}
			reply, err := netstack.Reply(&p, n)
			if err != nil {
				t.Fatalf("Reply(%d): %v", n, err)
			}
			_, _, udp := checkWithGopacket(t, reply)
			if int(udp.Length) != 8+n {
				t.Fatalf("reply UDP length %d, want %d", udp.Length, 8+n)
			}
			var q netstack.Packet
			if err := netstack.Parse(reply, 0, &q); err != nil || q.Class != netstack.ClassUDP {
				t.Fatalf("reply does not parse: class %d, %v", q.Class, err)
			}
		}
	})
}

// checkPartialOption parses frame again with AcceptPartialChecksum. The
// option may change one verdict only: a strict ErrChecksum whose UDP
// checksum field holds the pseudo-header sum (computed by naivePseudoSum,
// from gopacket's decoding when it is clean) becomes an accepted packet
// marked PartialChecksum, whose reply has a full checksum. Everything else
// is the strict result, unmarked.
func checkPartialOption(t *testing.T, frame []byte, ref *refFrame, strict *netstack.Packet, strictErr error) {
	t.Helper()
	buf := make([]byte, len(frame)+256)
	copy(buf, frame)
	in := buf[:len(frame)]
	lax := netstack.Parser{AcceptPartialChecksum: true}
	var p netstack.Packet
	err := lax.Parse(in, &p)
	pattern := false
	if strictErr == netstack.ErrChecksum && strict.UDP != nil {
		var src, dst netip.Addr
		if strict.IPv4 != nil {
			src, dst = strict.IPv4.SourceAddress(), strict.IPv4.DestinationAddress()
		} else {
			src, dst = strict.IPv6.SourceAddress(), strict.IPv6.DestinationAddress()
		}
		pattern = strict.UDP.Checksum() == naivePseudoSum(src, dst, len(strict.UDP))
		if ref.clean && !knownDisagreement(frame, ref) {
			// gopacket's view of the same fields must agree.
			refSrc, refDst := addrOf(ref.ip4.SrcIP), addrOf(ref.ip4.DstIP)
			if ref.v6 {
				refSrc, refDst = addrOf(ref.ip6.SrcIP), addrOf(ref.ip6.DstIP)
			}
			if want := ref.udp.Checksum == naivePseudoSum(refSrc, refDst, int(ref.udp.Length)); want != pattern {
				t.Fatalf("pseudo-header pattern: ours %v, from gopacket's decoding %v", pattern, want)
			}
		}
	}
	switch {
	case pattern:
		if err != nil || !p.PartialChecksum || p.Class != netstack.ClassUDP {
			t.Fatalf("the CHECKSUM_PARTIAL pattern with the option: %v, partial %v, class %d; want accepted and marked", err, p.PartialChecksum, p.Class)
		}
		reply, err := netstack.Reply(&p, len(p.Payload))
		if err != nil {
			t.Fatalf("Reply to a partial-checksum request: %v", err)
		}
		checkWithGopacket(t, reply)
	case err != strictErr || p.PartialChecksum || p.Class != strict.Class:
		t.Fatalf("with the option: %v, partial %v, class %d; strict: %v, class %d", err, p.PartialChecksum, p.Class, strictErr, strict.Class)
	}
}

func knownDisagreement(frame []byte, ref *refFrame) bool {
	l3 := netstack.EthernetLen
	if ref.tagged {
		l3 += netstack.VLANTagLen
		if ref.eth.EthernetType != layers.EthernetTypeDot1Q {
			return true // 802.1ad outer tag: gopacket decodes it, we do not
		}
	}
	if ref.v6 {
		return frame[l3]>>4 != 6 || ref.ip6.HopByHop != nil || ref.udp.Length == 0
	}
	return frame[l3]>>4 != 4 || binary.BigEndian.Uint16(frame[l3+2:]) == 0 || ref.udp.Length == 0
}

func compareWithGopacket(t *testing.T, frame []byte, ref *refFrame, p *netstack.Packet, err error) {
	t.Helper()
	// The verdict gopacket's recomputation gives.
	var want error
	switch {
	case !ref.v6 && naiveChecksum(ref.ip4.Contents) != 0xFFFF:
		want = netstack.ErrChecksum
	case ref.udp.Checksum == 0 && ref.v6:
		want = netstack.ErrZeroChecksum
	case ref.udp.Checksum == 0:
		want = nil
	default:
		c := referenceUDPChecksum(t, ref.network(), &ref.udp)
		if c != ref.udp.Checksum && !(c == 0 && ref.udp.Checksum == 0xFFFF) {
			want = netstack.ErrChecksum
		}
	}
	if err != want {
		t.Fatalf("Parse: %v; gopacket recomputation says %v\n%x", err, want, frame)
	}
	if err != nil {
		return
	}
	if p.Class != netstack.ClassUDP {
		t.Fatalf("class %d for a UDP datagram", p.Class)
	}
	src, dst := p.Ethernet.Source(), p.Ethernet.Destination()
	if !bytes.Equal(ref.eth.SrcMAC, src[:]) || !bytes.Equal(ref.eth.DstMAC, dst[:]) {
		t.Fatalf("MACs differ")
	}
	if ref.tagged && (p.VLAN == nil || p.VLAN.ID() != ref.dot1q.VLANIdentifier || p.VLAN.Priority() != ref.dot1q.Priority) {
		t.Fatalf("VLAN differs")
	}
	if ref.v6 {
		ip := p.IPv6
		if ip.SourceAddress() != addrOf(ref.ip6.SrcIP) || ip.DestinationAddress() != addrOf(ref.ip6.DstIP) ||
			ip.HopLimit() != ref.ip6.HopLimit || ip.TrafficClass() != ref.ip6.TrafficClass || ip.FlowLabel() != ref.ip6.FlowLabel ||
			ip.PayloadLength() != ref.ip6.Length || ip.NextHeader() != uint8(ref.ip6.NextHeader) {
			t.Fatalf("IPv6 header differs")
		}
	} else {
		ip := p.IPv4
		if ip.SourceAddress() != addrOf(ref.ip4.SrcIP) || ip.DestinationAddress() != addrOf(ref.ip4.DstIP) ||
			ip.TTL() != ref.ip4.TTL || ip.TOS() != ref.ip4.TOS || ip.ID() != ref.ip4.Id || ip.TotalLength() != ref.ip4.Length ||
			ip.HeaderLength() != int(ref.ip4.IHL)*4 || ip.Checksum() != ref.ip4.Checksum || ip.Protocol() != uint8(ref.ip4.Protocol) {
			t.Fatalf("IPv4 header differs")
		}
	}
	u := p.UDP
	if u.SourcePort() != uint16(ref.udp.SrcPort) || u.DestinationPort() != uint16(ref.udp.DstPort) || u.Length() != ref.udp.Length ||
		u.Checksum() != ref.udp.Checksum || !bytes.Equal(p.Payload, ref.udp.Payload) {
		t.Fatalf("UDP differs: ours %d→%d len %d, gopacket %d→%d len %d", u.SourcePort(), u.DestinationPort(), u.Length(), ref.udp.SrcPort, ref.udp.DstPort, ref.udp.Length)
	}
}

func addrOf(ip []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// FuzzBuild: frames BuildUDP writes from arbitrary fields decode in gopacket
// with those fields and valid checksums, and Parse reads them back.
func FuzzBuild(f *testing.F) {
	f.Add(false, false, uint16(0), uint64(0x0a000001), uint64(0x0a000002), uint16(40000), uint16(9000), uint8(0), uint8(0), uint32(0), []byte("payload"))     // IPv4
	f.Add(true, true, uint16(0xe00a), uint64(1), uint64(2), uint16(1), uint16(65535), uint8(255), uint8(0xb8), uint32(0xfffff), []byte{})                     // IPv6, tagged, empty
	f.Add(false, true, uint16(4095), uint64(0xffffffff), uint64(0), uint16(0), uint16(0), uint8(1), uint8(0xff), uint32(1), bytes.Repeat([]byte{0xff}, 1500)) // odd sizes
	f.Fuzz(func(t *testing.T, v6, tagged bool, tci uint16, a, b uint64, sport, dport uint16, ttl, tos uint8, flow uint32, payload []byte) {
		var src, dst netip.Addr
		if v6 {
			var x, y [16]byte
			binary.BigEndian.PutUint64(x[8:], a)
			binary.BigEndian.PutUint64(y[8:], b)
			x[0], y[0] = 0xfd, 0xfe
			src, dst = netip.AddrFrom16(x), netip.AddrFrom16(y)
		} else {
			var x, y [4]byte
			binary.BigEndian.PutUint32(x[:], uint32(a))
			binary.BigEndian.PutUint32(y[:], uint32(b))
			src, dst = netip.AddrFrom4(x), netip.AddrFrom4(y)
		}
		fields := netstack.UDPFields{
			SrcMAC: macA, DstMAC: macB, Tagged: tagged, VLANTCI: tci,
			Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport),
			TTL: ttl, TOS: tos, FlowLabel: flow, IPv4ID: uint16(a), IPv4Flags: netstack.IPv4FlagDontFragment,
		}
		out := make([]byte, fields.HeaderLen()+len(payload))
		frame, err := netstack.BuildUDP(out, &fields, payload)
		if err != nil {
			t.Fatal(err)
		}
		eth, nl, udp := checkWithGopacket(t, frame)
		if !bytes.Equal(eth.SrcMAC, macA[:]) || !bytes.Equal(eth.DstMAC, macB[:]) {
			t.Fatal("MACs differ")
		}
		wantTTL := ttl
		if wantTTL == 0 {
			wantTTL = netstack.DefaultTTL
		}
		switch ip := nl.(type) {
		case *layers.IPv4:
			if addrOf(ip.SrcIP) != src || addrOf(ip.DstIP) != dst || ip.TTL != wantTTL || ip.TOS != tos || ip.Id != uint16(a) || ip.Flags != layers.IPv4DontFragment {
				t.Fatalf("IPv4 header differs: %+v", ip)
			}
		case *layers.IPv6:
			if addrOf(ip.SrcIP) != src || addrOf(ip.DstIP) != dst || ip.HopLimit != wantTTL || ip.TrafficClass != tos || ip.FlowLabel != flow&0xfffff {
				t.Fatalf("IPv6 header differs: %+v", ip)
			}
		}
		if uint16(udp.SrcPort) != sport || uint16(udp.DstPort) != dport || !bytes.Equal(udp.Payload, payload) {
			t.Fatal("UDP differs")
		}
		var p netstack.Packet
		if err := netstack.Parse(frame, dport, &p); err != nil && !(dport == 0 && err == nil) {
			t.Fatalf("Parse of a built frame: %v", err)
		}
		if dport != 0 && (p.Class != netstack.ClassUDP || !bytes.Equal(p.Payload, payload)) {
			t.Fatalf("Parse of a built frame: class %d", p.Class)
		}
		if tagged && (p.VLAN == nil || p.VLAN.TCI() != tci) {
			t.Fatal("VLAN tag lost")
		}
	})
}
