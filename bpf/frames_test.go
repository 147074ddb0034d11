package bpf

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Frames with VLAN tags and IPv4 options are parsed down to the UDP port:
// a denied port counts ACLDropped, a service port without socket NoSocket.
func TestParsesVLANAndIPv4Options(t *testing.T) {
	f := newFixture(t, Options{})
	link, p := f.link, f.prog
	const servicePort, deniedPort = 7300, 7301
	if err := p.AddService(Service{Port: servicePort, ID: 9}); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, p, ACLRule{Source: netip.MustParsePrefix("0.0.0.0/0"), Port: deniedPort, Action: Deny})
	mustAdd(t, p, ACLRule{Source: netip.MustParsePrefix("::/0"), Port: deniedPort, Action: Deny})
	sink := newSink(t, link.A.Host, servicePort)
	raw := newRawSender(t, link.B)

	cases := []frame{
		{vlans: []uint16{10}},
		{vlans: []uint16{10}, v6: true},
		{vlans: []uint16{100, 10}},
		{vlans: []uint16{100, 10}, v6: true},
		{vlans: []uint16{10}, ipOptions: true},
		{ipOptions: true},
	}
	for _, c := range cases {
		for _, port := range []uint16{servicePort, deniedPort} {
			c.dport = port
			c.payload = []byte(fmt.Sprintf("%+v", c))
			wire := c.build(t, link)
			checkWithGopacket(t, wire, c)
			before := counters(t, p.Maps)
			raw.send(t, wire)
			f.settle(t)
			want := Counters{Seen: 2, Passed: 2, NoSocket: 1}
			if port == deniedPort {
				want = Counters{Seen: 2, Passed: 1, ACLDropped: 1}
			}
			checkDelta(t, before, counters(t, p.Maps), want)
		}
	}
	// The untagged frame with options is valid for the kernel too.
	got := sink.drain(t)
	if len(got) != 1 || string(got[0]) != fmt.Sprintf("%+v", frame{ipOptions: true, dport: servicePort}) {
		t.Fatalf("kernel socket got %q, want only the untagged frame with IP options", got)
	}
}

// checkWithGopacket makes sure the test frame is what the case says, by the
// reference decoder.
func checkWithGopacket(t *testing.T, wire []byte, c frame) {
	t.Helper()
	pkt := gopacket.NewPacket(wire, layers.LayerTypeEthernet, gopacket.Default)
	if e := pkt.ErrorLayer(); e != nil {
		t.Fatalf("gopacket cannot decode the test frame: %v", e.Error())
	}
	var tags int
	for _, l := range pkt.Layers() {
		if l.LayerType() == layers.LayerTypeDot1Q {
			tags++
		}
	}
	udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if tags != len(c.vlans) || udp == nil || uint16(udp.DstPort) != c.dport {
		t.Fatalf("decoded %d tags and UDP %v, want %d tags and port %d", tags, udp, len(c.vlans), c.dport)
	}
	if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && c.ipOptions && ip.IHL != 6 {
		t.Fatalf("IHL = %d, want 6", ip.IHL)
	}
}

// Truncated or inconsistent frames pass to the kernel and count as
// Malformed; valid traffic still gets through.
func TestMalformedFramesPass(t *testing.T) {
	f := newFixture(t, Options{})
	link, p := f.link, f.prog
	if err := p.AddService(Service{Port: 7400}); err != nil {
		t.Fatal(err)
	}
	raw := newRawSender(t, link.B)
	v4 := frame{dport: 7400}.build(t, link)           // 14 + 20 + 8
	v6 := frame{dport: 7400, v6: true}.build(t, link) // 14 + 40 + 8
	tagged := frame{dport: 7400, vlans: []uint16{5}}.build(t, link)
	with := func(b []byte, at int, v byte) []byte {
		b = slices.Clone(b)
		b[at] = v
		return b
	}
	cases := map[string][]byte{
		"truncated IPv4 header":    v4[:14+10],
		"truncated UDP over IPv4":  v4[:14+20+4],
		"IHL beyond the frame":     with(v4, 14, 0x4f),
		"IHL below 5":              with(v4, 14, 0x44),
		"wrong IPv4 version":       with(v4, 14, 0x65),
		"truncated IPv6 header":    v6[:14+30],
		"truncated UDP over IPv6":  v6[:14+40+7],
		"truncated VLAN tag":       tagged[:14+2],
		"truncated IPv4 over VLAN": tagged[:14+4+19],
	}
	for name, wire := range cases {
		before := counters(t, p.Maps)
		raw.send(t, wire)
		f.settle(t)
		d := counters(t, p.Maps).sub(before)
		if d.Malformed != 1 || d.Passed < 2 || d.NoSocket != 0 || d.ACLDropped != 0 || d.Redirected != 0 {
			t.Errorf("%s (%d bytes): counters moved by %+v, want Malformed 1 and Passed 2", name, len(wire), d)
		}
	}
}

// The loss knob drops exactly every n-th service packet and nothing else.
func TestLossKnob(t *testing.T) {
	f := newFixture(t, Options{})
	link, p := f.link, f.prog
	const port, n, burst = 7500, 4, 20
	if err := p.AddService(Service{Port: port}); err != nil {
		t.Fatal(err)
	}
	sink := newSink(t, link.A.Host, port)
	if err := p.SetLoss(n); err != nil {
		t.Fatal(err)
	}
	before := counters(t, p.Maps)
	for i := range burst {
		f.sender.send(t, link.A.Addr4, port, []byte(fmt.Sprint(i)))
	}
	f.settle(t)
	var got, want []string
	for _, b := range sink.drain(t) {
		got = append(got, string(b))
	}
	for i := range burst {
		if (i+1)%n != 0 {
			want = append(want, fmt.Sprint(i))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("with loss 1 in %d the kernel socket got %q, want %q", n, got, want)
	}
	checkDelta(t, before, counters(t, p.Maps),
		Counters{Seen: burst + 1, Passed: burst - burst/n + 1, NoSocket: burst - burst/n, LossDropped: burst / n})

	if err := p.SetLoss(0); err != nil {
		t.Fatal(err)
	}
	before = counters(t, p.Maps)
	for i := range burst {
		f.sender.send(t, link.A.Addr4, port, []byte(fmt.Sprint(i)))
	}
	f.settle(t)
	if got := len(sink.drain(t)); got != burst {
		t.Fatalf("with loss off the kernel socket got %d of %d", got, burst)
	}
	checkDelta(t, before, counters(t, p.Maps), Counters{Seen: burst + 1, Passed: burst + 1, NoSocket: burst})
}
