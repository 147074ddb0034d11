package bpf

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/zerohop/zerohop/internal/topo"
)

// XDP verdicts, for the kernel's BPF_PROG_TEST_RUN.
const (
	xdpDrop = 1
	xdpPass = 2
)

// offlineLink stands in for a veth pair when frames only feed test runs.
var offlineLink = &topo.Link{
	A: topo.Endpoint{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Addr4: netip.MustParseAddr("10.0.0.1"), Addr6: netip.MustParseAddr("fd00::1")},
	B: topo.Endpoint{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Addr4: netip.MustParseAddr("10.0.0.2"), Addr6: netip.MustParseAddr("fd00::2")},
}

// loadOffline loads the program without attaching it and claims a slot
// (heartbeats by hand: opts.HeartbeatInterval < 0), with a service on port
// 7000 and a deny rule for port 7001.
func loadOffline(tb testing.TB) *Program {
	tb.Helper()
	topo.RequireRoot(tb)
	spec, err := newSpec()
	if err != nil {
		tb.Fatal(err)
	}
	p, err := loadProgram("test-run", spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	if err := p.start(Options{HeartbeatInterval: -1}); err != nil {
		tb.Fatal(err)
	}
	if err := p.AddService(Service{Port: 7000}); err != nil {
		tb.Fatal(err)
	}
	for _, r := range []ACLRule{
		{Source: netip.MustParsePrefix("10.0.0.0/8"), Port: 7001, Action: Deny},
		{Source: netip.MustParsePrefix("fd00::/16"), Port: 7001, Action: Deny},
		{Source: netip.MustParsePrefix("fd00::3/128"), Port: 7002, Action: Allow},
		{Source: netip.MustParsePrefix("fd00::3/128"), Port: 0, Action: Deny},
	} {
		if err := p.AddACLRule(r); err != nil {
			tb.Fatal(err)
		}
	}
	return p
}

// withExtHeaders inserts IPv6 extension headers (8 bytes each, given by
// protocol number) between the IPv6 header and UDP of an untagged frame.
// A fragment header gets fragOff (in 8-byte units) and the MF flag.
func withExtHeaders(tb testing.TB, wire []byte, fragOff uint16, protos ...byte) []byte {
	tb.Helper()
	const ip6 = 14
	out := slices.Clone(wire[:ip6+40])
	next := out[ip6+6]
	out[ip6+6] = protos[0]
	for i, proto := range protos {
		follow := next
		if i+1 < len(protos) {
			follow = protos[i+1]
		}
		hdr := make([]byte, 8)
		hdr[0] = follow
		if proto == 44 {
			binary.BigEndian.PutUint16(hdr[2:], fragOff<<3|1)
		} else {
			hdr[2], hdr[3] = 1, 4 // PadN option filling the header
		}
		out = append(out, hdr...)
	}
	out = append(out, wire[ip6+40:]...)
	binary.BigEndian.PutUint16(out[ip6+4:], uint16(len(out)-ip6-40))
	return out
}

// blocked6 is denied on every port except 7002.
var blocked6 = netip.MustParseAddr("fd00::3")

var arpFrame = append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x06}, make([]byte, 46)...)

// The verdict for each kind of frame through BPF_PROG_TEST_RUN (no
// interface, queue 0, no socket registered).
func TestVerdictsByTestRun(t *testing.T) {
	p := loadOffline(t)
	cases := []struct {
		name  string
		frame []byte
		want  uint32
		moved Counters
	}{
		{"ARP", arpFrame, xdpPass, Counters{Seen: 1, Passed: 1}},
		{"UDP other port", frame{dport: 53}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1}},
		{"service, no socket", frame{dport: 7000}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1, NoSocket: 1}},
		{"service over IPv6 in QinQ", frame{dport: 7000, v6: true, vlans: []uint16{1, 2}}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1, NoSocket: 1}},
		{"denied", frame{dport: 7001}.build(t, offlineLink), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"denied, IP options", frame{dport: 7001, ipOptions: true}.build(t, offlineLink), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"denied port, IPv6 source", frame{dport: 7001, v6: true}.build(t, offlineLink), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"IPv6 hop-by-hop, denied port", withExtHeaders(t, frame{dport: 7001, v6: true}.build(t, offlineLink), 0, 0), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"IPv6 dst opts + first fragment, denied port", withExtHeaders(t, frame{dport: 7001, v6: true}.build(t, offlineLink), 0, 60, 44), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"IPv6 first fragment, service", withExtHeaders(t, frame{dport: 7000, v6: true}.build(t, offlineLink), 0, 44), xdpPass, Counters{Seen: 1, Passed: 1, Fragment: 1}},
		{"IPv6 later fragment, service", withExtHeaders(t, frame{dport: 7000, v6: true}.build(t, offlineLink), 3, 44), xdpPass, Counters{Seen: 1, Passed: 1, Fragment: 1}},
		{"IPv4 later fragment", ipv4Fragment(t, frame{dport: 7000}.build(t, offlineLink), 3), xdpPass, Counters{Seen: 1, Passed: 1, Fragment: 1}},
		{"IPv4 first fragment, service", ipv4Fragment(t, frame{dport: 7000}.build(t, offlineLink), 0), xdpPass, Counters{Seen: 1, Passed: 1, Fragment: 1}},
		{"IPv6 port rule beats any-port deny", frame{dport: 7002, v6: true, src: blocked6}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1}},
		{"IPv6 any-port deny", frame{dport: 53, v6: true, src: blocked6}.build(t, offlineLink), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"IPv6 later fragment, any-port deny", withExtHeaders(t, frame{dport: 7002, v6: true, src: blocked6}.build(t, offlineLink), 3, 44), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"IPv6 five extension headers, any-port deny", withExtHeaders(t, frame{dport: 7002, v6: true, src: blocked6}.build(t, offlineLink), 0, 0, 60, 60, 60, 60), xdpDrop, Counters{Seen: 1, ACLDropped: 1}},
		{"IPv6 truncated extension header", withExtHeaders(t, frame{dport: 7000, v6: true}.build(t, offlineLink), 0, 0)[:14+40+1], xdpPass, Counters{Seen: 1, Passed: 1, Malformed: 1}},
		{"truncated UDP", frame{dport: 7000}.build(t, offlineLink)[:14+20+6], xdpPass, Counters{Seen: 1, Passed: 1, Malformed: 1}},
	}
	for _, c := range cases {
		if err := p.Heartbeat(); err != nil {
			t.Fatal(err)
		}
		before := counters(t, p.Maps)
		got, err := p.prog.Run(&ebpf.RunOptions{Data: c.frame})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
		if d := counters(t, p.Maps).sub(before); d != c.moved {
			t.Errorf("%s: counters moved by %+v, want %+v", c.name, d, c.moved)
		}
	}
}

// ipv4Fragment marks an untagged IPv4 frame as a fragment at offset off
// (8-byte units) with more fragments following, fixing the header checksum.
func ipv4Fragment(tb testing.TB, wire []byte, off uint16) []byte {
	tb.Helper()
	const ip = 14
	out := slices.Clone(wire)
	binary.BigEndian.PutUint16(out[ip+6:], 0x2000|off)
	out[ip+10], out[ip+11] = 0, 0
	var sum uint32
	for i := ip; i < ip+20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(out[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(out[ip+10:], ^uint16(sum))
	return out
}

// BenchmarkSteer measures the program per frame in the kernel's test run
// (ns/frame; Go's ns/op includes one syscall per b.N frames).
func BenchmarkSteer(b *testing.B) {
	p := loadOffline(b)
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"arp", arpFrame},
		{"udp-pass", frame{dport: 53}.build(b, offlineLink)},
		{"service-no-socket", frame{dport: 7000}.build(b, offlineLink)},
		{"service-ipv6-vlan", frame{dport: 7000, v6: true, vlans: []uint16{1}}.build(b, offlineLink)},
		{"acl-deny", frame{dport: 7001}.build(b, offlineLink)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			_, per, err := p.prog.Benchmark(c.frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
		})
	}
}

// A service is steered only while its slot holds its owner token and a
// heartbeat within StaleAfter of the kernel's clock, on either side; frames
// over its MaxLen go to the kernel. Each case counts its reason, globally
// and in the slot.
func TestStaleAndOversizeByTestRun(t *testing.T) {
	p := loadOffline(t)
	if err := p.AddService(Service{Port: 7003, MaxLen: 80}); err != nil {
		t.Fatal(err)
	}
	small := frame{dport: 7000}.build(t, offlineLink)
	big := frame{dport: 7003, payload: make([]byte, 100)}.build(t, offlineLink)
	fits := frame{dport: 7003, payload: make([]byte, 10)}.build(t, offlineLink)
	setHeartbeat := func(delta time.Duration) {
		now, err := kernelNow()
		if err != nil {
			t.Fatal(err)
		}
		rec := steerSlot{HeartbeatNs: uint64(int64(now) + delta.Nanoseconds()), Owner: p.token, Pid: p.pid}
		if err := p.slots.Update(uint32(p.Slot()), &rec, ebpf.UpdateExist); err != nil {
			t.Fatal(err)
		}
	}
	var key steerServiceKey
	key.Port = 7000
	var svc steerService
	if err := p.services.Lookup(&key, &svc); err != nil {
		t.Fatal(err)
	}
	forged := svc
	forged.Owner++
	cases := []struct {
		name  string
		setup func()
		frame []byte
		moved Counters
		slot  SlotCounters
	}{
		{"live", func() { setHeartbeat(0) }, small, Counters{Seen: 1, Passed: 1, NoSocket: 1}, SlotCounters{NoSocket: 1}},
		{"heartbeat 2 s old", func() { setHeartbeat(-2 * time.Second) }, small, Counters{Seen: 1, Passed: 1, Stale: 1}, SlotCounters{Stale: 1}},
		{"heartbeat 2 s ahead", func() { setHeartbeat(2 * time.Second) }, small, Counters{Seen: 1, Passed: 1, Stale: 1}, SlotCounters{Stale: 1}},
		{"heartbeat half a StaleAfter old", func() { setHeartbeat(-StaleAfter / 2) }, small, Counters{Seen: 1, Passed: 1, NoSocket: 1}, SlotCounters{NoSocket: 1}},
		{"another owner's token", func() {
			setHeartbeat(0)
			if err := p.services.Update(&key, &forged, ebpf.UpdateExist); err != nil {
				t.Fatal(err)
			}
		}, small, Counters{Seen: 1, Passed: 1, Stale: 1}, SlotCounters{Stale: 1}},
		{"token back", func() {
			if err := p.services.Update(&key, &svc, ebpf.UpdateExist); err != nil {
				t.Fatal(err)
			}
		}, small, Counters{Seen: 1, Passed: 1, NoSocket: 1}, SlotCounters{NoSocket: 1}},
		{"over MaxLen", nil, big, Counters{Seen: 1, Passed: 1, Oversize: 1}, SlotCounters{Oversize: 1}},
		{"within MaxLen", nil, fits, Counters{Seen: 1, Passed: 1, NoSocket: 1}, SlotCounters{NoSocket: 1}},
	}
	for _, c := range cases {
		if c.setup != nil {
			c.setup()
		}
		before := counters(t, p.Maps)
		sBefore, err := p.SlotCounters(p.Slot())
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.prog.Run(&ebpf.RunOptions{Data: c.frame})
		if err != nil || got != xdpPass {
			t.Fatalf("%s: verdict %d, %v; want pass", c.name, got, err)
		}
		if d := counters(t, p.Maps).sub(before); d != c.moved {
			t.Errorf("%s: counters moved by %+v, want %+v", c.name, d, c.moved)
		}
		sAfter, _ := p.SlotCounters(p.Slot())
		d := SlotCounters{Redirected: sAfter.Redirected - sBefore.Redirected, NoSocket: sAfter.NoSocket - sBefore.NoSocket,
			Stale: sAfter.Stale - sBefore.Stale, Oversize: sAfter.Oversize - sBefore.Oversize}
		if d != c.slot {
			t.Errorf("%s: slot counters moved by %+v, want %+v", c.name, d, c.slot)
		}
	}
	// Services reports what the program sees.
	setHeartbeat(-2 * time.Second)
	svcs, err := p.Services()
	if err != nil || len(svcs) != 2 || !svcs[0].Stale || !svcs[1].Stale {
		t.Fatalf("Services with a stale heartbeat: %+v, %v; want both stale", svcs, err)
	}
	if err := p.Heartbeat(); err != nil {
		t.Fatal(err)
	}
	svcs, _ = p.Services()
	if len(svcs) != 2 || svcs[0].Stale || svcs[1].Stale {
		t.Fatalf("Services after a heartbeat: %+v; want both live", svcs)
	}
}

// A service flagged ServiceRequireSealed: the program drops an unsealed
// GWIR REQUEST (IPv4 and IPv6, in VLANs), counted as UnsealedDropped, and
// lets through a sealed one, a PING, a frame too short for a GWIR header
// and one that is not GWIR (the runtime answers or drops those). The same
// unsealed request to a service without the flag goes on.
func TestRequireSealedByTestRun(t *testing.T) {
	p := loadOffline(t)
	if err := p.AddService(Service{Port: 7004, Flags: ServiceRequireSealed}); err != nil {
		t.Fatal(err)
	}
	gwir := func(kind byte, flags uint16) []byte {
		h := make([]byte, 24)
		copy(h, "GWIR")
		h[4], h[7] = 1, kind
		binary.BigEndian.PutUint32(h[16:], 0x3ee5deec)
		binary.BigEndian.PutUint16(h[22:], flags)
		return h
	}
	const request, ping, sealed, ext = 1, 3, 0x4, 0x2
	unsealed := gwir(request, ext)
	notGWIR := append([]byte("HTTP"), make([]byte, 20)...)
	cases := []struct {
		name  string
		frame []byte
		want  uint32
		moved Counters
	}{
		{"unsealed request", frame{dport: 7004, payload: unsealed}.build(t, offlineLink), xdpDrop, Counters{Seen: 1, UnsealedDropped: 1}},
		{"unsealed request, IPv6 in a VLAN", frame{dport: 7004, v6: true, vlans: []uint16{5}, payload: unsealed}.build(t, offlineLink), xdpDrop, Counters{Seen: 1, UnsealedDropped: 1}},
		{"sealed request", frame{dport: 7004, payload: append(gwir(request, sealed|ext), make([]byte, 28)...)}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1, NoSocket: 1}},
		{"PING", frame{dport: 7004, payload: gwir(ping, 0)}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1, NoSocket: 1}},
		{"shorter than a header", frame{dport: 7004, payload: unsealed[:23]}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1, NoSocket: 1}},
		{"not GWIR", frame{dport: 7004, payload: notGWIR}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1, NoSocket: 1}},
		{"unsealed request, service without the flag", frame{dport: 7000, payload: unsealed}.build(t, offlineLink), xdpPass, Counters{Seen: 1, Passed: 1, NoSocket: 1}},
	}
	for _, c := range cases {
		if err := p.Heartbeat(); err != nil {
			t.Fatal(err)
		}
		before := counters(t, p.Maps)
		got, err := p.prog.Run(&ebpf.RunOptions{Data: c.frame})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
		if d := counters(t, p.Maps).sub(before); d != c.moved {
			t.Errorf("%s: counters moved by %+v, want %+v", c.name, d, c.moved)
		}
	}
}
