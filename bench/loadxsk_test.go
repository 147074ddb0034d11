package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/netstack"
	"github.com/zerohop/zerohop/proto"
)

var (
	testClientMAC = netstack.MAC{0x02, 0, 0, 0, 0, 0x0b}
	testServerMAC = netstack.MAC{0x02, 0, 0, 0, 0, 0x0a}
)

type addrPair struct {
	name           string
	client, server netip.AddrPort
}

var testAddrs = []addrPair{
	{"ipv4", netip.MustParseAddrPort("10.77.0.2:9001"), netip.MustParseAddrPort("10.77.0.1:9000")},
	{"ipv6", netip.MustParseAddrPort("[fd00:77::2]:9001"), netip.MustParseAddrPort("[fd00:77::1]:9000")},
}

// fnv1a is the method id as the wire format defines it, computed here
// without package proto.
func fnv1a(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// TestGWIRFramesAsGopacketSeesThem builds request frames as the XSK load
// does and checks them with gopacket: every header field, and the
// checksums and lengths by re-serialising the decoded layers with
// gopacket's own checksum and length code and comparing the bytes. The
// GWIR header is read by offset, as the wire format states it.
func TestGWIRFramesAsGopacketSeesThem(t *testing.T) {
	for _, a := range testAddrs {
		for _, size := range []int{2, 64, 1400} {
			payload := Payload(size)
			g, err := newGWIRFrames(testClientMAC, testServerMAC, a.client, a.server, proto.MethodID(echo.EchoMethod), payload)
			if err != nil {
				t.Fatal(err)
			}
			buf := bytes.Repeat([]byte{0xee}, xskLoadFrameSize) // garbage where the frame goes
			const id = 0x0000_0007_0000_002a                    // generation 7, slot 42
			frame, err := g.build(buf, id)
			if err != nil {
				t.Fatalf("%s/%d: %v", a.name, size, err)
			}
			if len(frame) != g.frameLen() {
				t.Fatalf("%s/%d: frame of %d bytes, frameLen says %d", a.name, size, len(frame), g.frameLen())
			}
			pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("%s/%d: gopacket: %v", a.name, size, el.Error())
			}
			eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !bytes.Equal(eth.SrcMAC, testClientMAC[:]) || !bytes.Equal(eth.DstMAC, testServerMAC[:]) {
				t.Errorf("%s: MACs %v → %v", a.name, eth.SrcMAC, eth.DstMAC)
			}
			udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if udp == nil {
				t.Fatalf("%s: no UDP layer: %v", a.name, pkt)
			}
			var net gopacket.SerializableLayer
			switch ip := pkt.NetworkLayer().(type) {
			case *layers.IPv4:
				if !ip.SrcIP.Equal(a.client.Addr().AsSlice()) || !ip.DstIP.Equal(a.server.Addr().AsSlice()) ||
					ip.Protocol != layers.IPProtocolUDP || ip.Flags != layers.IPv4DontFragment || ip.TTL == 0 {
					t.Errorf("%s: IPv4 header %+v", a.name, ip)
				}
				udp.SetNetworkLayerForChecksum(ip)
				net = ip
			case *layers.IPv6:
				if !ip.SrcIP.Equal(a.client.Addr().AsSlice()) || !ip.DstIP.Equal(a.server.Addr().AsSlice()) ||
					ip.NextHeader != layers.IPProtocolUDP || ip.HopLimit == 0 {
					t.Errorf("%s: IPv6 header %+v", a.name, ip)
				}
				udp.SetNetworkLayerForChecksum(ip)
				net = ip
			default:
				t.Fatalf("%s: network layer %T", a.name, ip)
			}
			if udp.SrcPort != layers.UDPPort(a.client.Port()) || udp.DstPort != layers.UDPPort(a.server.Port()) {
				t.Errorf("%s: ports %d → %d", a.name, udp.SrcPort, udp.DstPort)
			}
			// gopacket recomputes lengths and checksums: the bytes must not change.
			out := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(out, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
				eth, net, udp, gopacket.Payload(udp.Payload)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), frame) {
				t.Errorf("%s/%d: gopacket's lengths or checksums differ:\n ours % x\n its  % x", a.name, size, frame, out.Bytes())
			}
			gw := udp.Payload
			if len(gw) != 24+size || string(gw[0:4]) != "GWIR" || gw[4] != 1 || gw[7] != 1 ||
				int(binary.BigEndian.Uint16(gw[5:7])) != size || binary.BigEndian.Uint64(gw[8:16]) != id ||
				binary.BigEndian.Uint32(gw[16:20]) != fnv1a(echo.EchoMethod) ||
				binary.BigEndian.Uint16(gw[20:22]) != 0 || binary.BigEndian.Uint16(gw[22:24]) != 0 ||
				!bytes.Equal(gw[24:], payload) {
				t.Errorf("%s/%d: GWIR frame % x", a.name, size, gw)
			}
		}
	}
}

// TestGWIRFramesMatchAFullBuild: a frame from the template with its id
// patched in and its checksum updated is byte for byte what BuildUDP
// writes for that request from scratch, for ids all over the range (the
// incremental checksum's carries and its zero case included).
func TestGWIRFramesMatchAFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range testAddrs {
		payload := Payload(64)
		method := proto.MethodID(echo.EchoMethod)
		g, err := newGWIRFrames(testClientMAC, testServerMAC, a.client, a.server, method, payload)
		if err != nil {
			t.Fatal(err)
		}
		ids := []uint64{0, 1, 1 << 32, 0xffff_ffff_ffff_ffff, 0x8000_0000_0000_0001}
		for range 20000 {
			ids = append(ids, rng.Uint64())
		}
		// An id whose checksum comes out zero, which the field must carry
		// as 0xffff (found by search over the low bits).
		zero := false
		for i := uint64(0); i < 1<<17 && !zero; i++ {
			req, _ := proto.EncodeRequest(make([]byte, proto.HeaderLen+len(payload)), i, method, 0, payload)
			f, _ := netstack.BuildUDP(make([]byte, g.frameLen()), &g.fields, req)
			if netstack.UDP(f[g.udpOff:]).Checksum() == 0xffff {
				ids, zero = append(ids, i), true
			}
		}
		if !zero {
			t.Fatalf("%s: no id with a zero checksum in the search range", a.name)
		}
		got, want := make([]byte, xskLoadFrameSize), make([]byte, xskLoadFrameSize)
		for _, id := range ids {
			f, err := g.build(got, id)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := proto.EncodeRequest(want[g.hdrLen:], id, method, 0, payload)
			full, err := netstack.BuildUDP(want, &g.fields, req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f, full) {
				t.Fatalf("%s: id %#x:\n patched % x\n built   % x", a.name, id, f, full)
			}
		}
	}
}

func TestGWIRFramesRefuseWhatDoesNotFit(t *testing.T) {
	a := testAddrs[0]
	g, err := newGWIRFrames(testClientMAC, testServerMAC, a.client, a.server, 1, Payload(64))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.build(make([]byte, g.frameLen()-1), 1); err == nil {
		t.Error("a frame one byte too long for its buffer was built")
	}
	if _, err := newGWIRFrames(testClientMAC, testServerMAC, a.client, testAddrs[1].server, 1, nil); err == nil {
		t.Error("an IPv4 client and an IPv6 server were accepted")
	}
}

// replyFrame is an independent encoder of what a server sends: gopacket
// for the headers and checksums, proto for the GWIR frame.
func replyFrame(t testing.TB, from, to netip.AddrPort, gwir []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(testServerMAC[:]), DstMAC: net.HardwareAddr(testClientMAC[:])}
	udp := &layers.UDP{SrcPort: layers.UDPPort(from.Port()), DstPort: layers.UDPPort(to.Port())}
	var ip gopacket.SerializableLayer
	if from.Addr().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: from.Addr().AsSlice(), DstIP: to.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(v4)
		ip = v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: from.Addr().AsSlice(), DstIP: to.Addr().AsSlice()}
		udp.SetNetworkLayerForChecksum(v6)
		ip = v6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(gwir)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func TestGWIRRepliesAreMatchedByIDAndSource(t *testing.T) {
	for _, a := range testAddrs {
		r := newGWIRReplies(a.client, a.server)
		payload := Payload(64)
		resp, err := proto.EncodeResponse(make([]byte, 256), 0x5_0000_0003, proto.MethodID(echo.EchoMethod), proto.StatusOK, payload)
		if err != nil {
			t.Fatal(err)
		}
		f, err := r.parse(replyFrame(t, a.server, a.client, resp))
		if err != nil || f.RequestID() != 0x5_0000_0003 || f.Status() != proto.StatusOK || !bytes.Equal(f.Payload(), payload) {
			t.Fatalf("%s: a valid reply: %v, %v", a.name, f, err)
		}
		req, _ := proto.EncodeRequest(make([]byte, 256), 9, proto.MethodID(echo.EchoMethod), 0, payload)
		if f, err := r.parse(replyFrame(t, a.server, a.client, req)); err != nil || f.RequestID() != 9 {
			t.Errorf("%s: a request echoed verbatim (raw-xsk): %v, %v", a.name, f, err)
		}
		otherPort := netip.AddrPortFrom(a.server.Addr(), a.server.Port()+1)
		otherHost := netip.AddrPortFrom(a.server.Addr().Next(), a.server.Port())
		pong, _ := proto.EncodePong(make([]byte, 64), 3, proto.PongServing)
		corrupt := replyFrame(t, a.server, a.client, resp)
		corrupt[len(corrupt)-1] ^= 0x40 // payload bit: the UDP checksum no longer holds
		for _, c := range []struct {
			what  string
			frame []byte
			want  error
		}{
			{"from another port", replyFrame(t, otherPort, a.client, resp), errReplyForeign},
			{"from another host", replyFrame(t, otherHost, a.client, resp), errReplyForeign},
			{"to another port", replyFrame(t, a.server, netip.AddrPortFrom(a.client.Addr(), 7), resp), errReplyNotUDP},
			{"bad UDP checksum", corrupt, errReplyNotUDP},
			{"truncated", replyFrame(t, a.server, a.client, resp)[:40], errReplyNotUDP},
			{"a PONG", replyFrame(t, a.server, a.client, pong), errReplyNotAReply},
		} {
			_, err := r.parse(c.frame)
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %s: got %v, want %v", a.name, c.what, err, c.want)
			}
		}
		if _, err := r.parse(replyFrame(t, a.server, a.client, []byte("GWIR but not a frame"))); err == nil {
			t.Errorf("%s: a datagram that is not a GWIR frame was taken", a.name)
		}
	}
}

func TestSlotTableGenerations(t *testing.T) {
	tab := newSlotTable(3)
	for i := range 3 {
		tab.issue(i)
	}
	if _, ok := tab.match(tab.id(1)); ok {
		t.Error("a reply matched a request not sent yet")
	}
	for _, i := range tab.pending {
		tab.sent(i, 100)
	}
	tab.requeue(nil, len(tab.pending))
	if len(tab.pending) != 0 {
		t.Fatalf("pending after sending all: %v", tab.pending)
	}
	first := tab.id(1)
	if i, ok := tab.match(first); !ok || i != 1 {
		t.Fatalf("match(%#x) = %d, %v", first, i, ok)
	}
	tab.issue(1) // answered (or timed out): a new generation
	tab.sent(1, 200)
	tab.requeue(nil, len(tab.pending))
	if _, ok := tab.match(first); ok {
		t.Error("a reply to the previous generation matched")
	}
	if i, ok := tab.match(tab.id(1)); !ok || i != 1 {
		t.Error("the current generation does not match")
	}
	if _, ok := tab.match(uint64(tab.slots[0].gen)<<32 | 3); ok {
		t.Error("a slot index out of range matched")
	}
	// A pass took slots 0 and 2 of pending [0 2 1]; 2 found no room in the
	// TX ring: it goes back in front of the rest, keeping its id.
	tab.issue(0)
	tab.issue(2)
	tab.issue(1)
	id2 := tab.id(2)
	tab.sent(0, 300)
	tab.requeue([]int{2}, 2)
	if len(tab.pending) != 2 || tab.pending[0] != 2 || tab.pending[1] != 1 || tab.id(2) != id2 {
		t.Errorf("after requeue: pending %v, id %#x (was %#x)", tab.pending, tab.id(2), id2)
	}
	if _, ok := tab.match(id2); ok {
		t.Error("a reply matched a request that was never sent")
	}
}

// FuzzGWIRReplies feeds arbitrary frames to the reply parser: it must not
// panic, and whatever it accepts gopacket must decode as a UDP datagram
// from the server to the client's port whose payload proto parses as the
// same frame.
func FuzzGWIRReplies(f *testing.F) {
	a := testAddrs[0]
	resp, _ := proto.EncodeResponse(make([]byte, 256), 77, 1, proto.StatusOK, Payload(16))
	f.Add(replyFrame(f, a.server, a.client, resp))
	f.Add(replyFrame(f, testAddrs[1].server, testAddrs[1].client, resp))
	f.Add([]byte{})
	r4, r6 := newGWIRReplies(a.client, a.server), newGWIRReplies(testAddrs[1].client, testAddrs[1].server)
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, r := range []*gwirReplies{r4, r6} {
			got, err := r.parse(frame)
			if err != nil {
				continue
			}
			pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
			udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if udp == nil || pkt.NetworkLayer() == nil {
				t.Fatalf("accepted, but gopacket finds no UDP datagram: % x", frame)
			}
			src := pkt.NetworkLayer().NetworkFlow().Src().Raw()
			if !bytes.Equal(src, r.server.Addr().AsSlice()) || uint16(udp.SrcPort) != r.server.Port() ||
				uint16(udp.DstPort) != r.parser.Port {
				t.Fatalf("accepted a datagram from %v:%d to port %d", net.IP(src), udp.SrcPort, udp.DstPort)
			}
			if want, err := proto.Parse(udp.Payload); err != nil || !bytes.Equal(want, got) {
				t.Fatalf("accepted %x; proto over gopacket's payload: %x, %v", []byte(got), []byte(want), err)
			}
		}
	})
}

// xskRequestPath is the XSK load's work per request outside the kernel:
// build the request frame, parse its reply, match it to its slot, record
// the latency, issue the slot again.
func xskRequestPath(tb testing.TB) func() {
	a := testAddrs[0]
	g, err := newGWIRFrames(testClientMAC, testServerMAC, a.client, a.server, proto.MethodID(echo.EchoMethod), Payload(64))
	if err != nil {
		tb.Fatal(err)
	}
	resp, _ := proto.EncodeResponse(make([]byte, 256), 0, proto.MethodID(echo.EchoMethod), proto.StatusOK, Payload(64))
	reply := replyFrame(tb, a.server, a.client, resp)
	udpOff := len(reply) - len(resp)
	replies := newGWIRReplies(a.client, a.server)
	c := &xskClient{frames: g, replies: replies, slots: newSlotTable(1), wantLen: len(resp)}
	c.slots.issue(0)
	buf := make([]byte, xskLoadFrameSize)
	hist := newHistogram()
	var res ClientResult
	return func() {
		if _, err := g.build(buf, c.slots.id(0)); err != nil {
			tb.Fatal(err)
		}
		c.slots.sent(0, 1000)
		c.slots.pending = c.slots.pending[:0]
		// The server's reply to it; the checksum is fixed up as a server would.
		binary.BigEndian.PutUint64(reply[udpOff+8:], c.slots.id(0))
		fixUDPChecksum(reply)
		c.handle(reply, 2000, true, &res, hist)
		if res.Errors != 0 {
			tb.Fatalf("the reply was not taken: %+v", res)
		}
	}
}

// fixUDPChecksum recomputes the UDP checksum of an Ethernet/IPv4/UDP frame.
func fixUDPChecksum(frame []byte) {
	ip := netstack.IPv4(frame[netstack.EthernetLen:])
	udp := netstack.UDP(ip[ip.HeaderLength():])
	udp.SetChecksum(0)
	udp.SetChecksum(udp.CalculateChecksum(ip.SourceAddress(), ip.DestinationAddress()))
}

func TestXSKLoadRequestPathDoesNotAllocate(t *testing.T) {
	step := xskRequestPath(t)
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

func BenchmarkXSKLoadRequestPath(b *testing.B) {
	step := xskRequestPath(b)
	b.ReportAllocs()
	for b.Loop() {
		step()
	}
}
