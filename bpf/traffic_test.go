package bpf

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
)

// waitBound bounds every wait for a packet the test expects; it is a guard
// against hangs on a loaded machine, not a timing assertion.
const waitBound = 10 * time.Second

// markerPort is never a service and never denied: a datagram to it sent
// after a burst arrives only after the XDP program has handled the whole
// burst (one veth queue, processed in order), so counters and sinks are
// settled when it arrives.
const markerPort = 7999

type fixture struct {
	link   *topo.Link
	prog   *Program
	sender *udpSender
	marker *udpSink
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	f := &fixture{link: link, prog: attach(t, link, opts)}
	f.sender = newSender(t, link.B.Host)
	f.marker = newSink(t, link.A.Host, markerPort)
	// Resolve the neighbours of both families first: a datagram waiting
	// for ARP or ND could otherwise overtake or be overtaken by a marker.
	for _, to := range []netip.Addr{link.A.Addr6, link.A.Addr4} {
		f.sender.send(t, to, markerPort, []byte("warm up"))
		if got := f.marker.wait(t, waitBound); string(got) != "warm up" {
			t.Fatalf("warm-up over %v got %q", to, got)
		}
	}
	return f
}

// settle sends a marker over IPv4 and waits for it.
func (f *fixture) settle(t *testing.T) {
	t.Helper()
	f.sender.send(t, f.link.A.Addr4, markerPort, []byte("marker"))
	if got := f.marker.wait(t, waitBound); string(got) != "marker" {
		t.Fatalf("marker port got %q", got)
	}
}

func TestNonServiceTrafficPasses(t *testing.T) {
	f := newFixture(t, Options{})
	link := f.link
	before := counters(t, f.prog.Maps)

	// ARP and ICMP echo over IPv4, neighbour discovery and ICMPv6 over IPv6.
	for _, args := range [][]string{
		{"ping", "-c", "2", "-W", "10", link.A.Addr4.String()},
		{"ping", "-6", "-c", "2", "-W", "10", link.A.Addr6.String()},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := link.B.Host.Command(ctx, args[0], args[1:]...).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), link.B.Host.Name, err, out)
		}
	}
	out, err := exec.Command("ip", "-n", link.B.Host.Name, "neigh", "show", link.A.Addr4.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), link.A.MAC.String()) {
		t.Fatalf("ARP entry for %v: %v %s, want lladdr %v", link.A.Addr4, err, out, link.A.MAC)
	}

	// UDP to a port with no service reaches the kernel socket, both families.
	sink := newSink(t, link.A.Host, 7001)
	for _, to := range []netip.Addr{link.A.Addr4, link.A.Addr6} {
		f.sender.send(t, to, 7001, []byte("hello "+to.String()))
		if got := sink.wait(t, waitBound); string(got) != "hello "+to.String() {
			t.Fatalf("got %q", got)
		}
	}
	// ping: 2 requests each family plus ARP/ND; UDP: 2.
	checkDelta(t, before, counters(t, f.prog.Maps), Counters{Seen: 6, Passed: 6})
}

func TestServiceWithoutSocketPasses(t *testing.T) {
	f := newFixture(t, Options{})
	link, p := f.link, f.prog
	if err := p.AddService(Service{Port: 7100, ID: 1}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddService(Service{Port: 7101, Addr: link.A.Addr4, ID: 2, Flags: 0}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddService(Service{Port: 7100, ID: 3}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate AddService: %v, want ErrExists", err)
	}
	if err := p.AddService(Service{Port: 0}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("AddService port 0: %v, want ErrInvalid", err)
	}
	got, err := p.Services()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b Service) int { return int(a.Port) - int(b.Port) })
	pid := uint32(os.Getpid())
	want := []Service{{Port: 7100, ID: 1, Slot: p.Slot(), PID: pid}, {Port: 7101, Addr: link.A.Addr4, ID: 2, Slot: p.Slot(), PID: pid}}
	if !slices.Equal(got, want) {
		t.Fatalf("Services() = %+v, want %+v", got, want)
	}

	s7100 := newSink(t, link.A.Host, 7100)
	s7101 := newSink(t, link.A.Host, 7101)
	before := counters(t, p.Maps)
	for i := range 3 {
		f.sender.send(t, link.A.Addr4, 7100, []byte(fmt.Sprint("v4 ", i)))
		f.sender.send(t, link.A.Addr6, 7100, []byte(fmt.Sprint("v6 ", i)))
	}
	f.sender.send(t, link.A.Addr4, 7101, []byte("addr match"))
	f.sender.send(t, link.A.Addr6, 7101, []byte("other addr")) // not the service's address
	f.settle(t)
	if got := len(s7100.drain(t)); got != 6 {
		t.Fatalf("kernel socket on the service port got %d datagrams, want 6", got)
	}
	if got := len(s7101.drain(t)); got != 2 {
		t.Fatalf("kernel socket on 7101 got %d datagrams, want 2", got)
	}
	checkDelta(t, before, counters(t, p.Maps), Counters{Seen: 9, Passed: 9, NoSocket: 7})

	if err := p.RemoveService(7100, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveService(7100, netip.Addr{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second RemoveService: %v, want ErrNotFound", err)
	}
	before = counters(t, p.Maps)
	f.sender.send(t, link.A.Addr4, 7100, []byte("plain"))
	f.settle(t)
	checkDelta(t, before, counters(t, p.Maps), Counters{Seen: 2, Passed: 2})
}

func TestACL(t *testing.T) {
	f := newFixture(t, Options{})
	link, p := f.link, f.prog
	sink := newSink(t, link.A.Host, 7200)
	// send sends n datagrams from B over each family and returns how many
	// the kernel socket received.
	send := func(t *testing.T, to netip.Addr, n int) int {
		t.Helper()
		for i := range n {
			f.sender.send(t, to, 7200, []byte(fmt.Sprint(i)))
		}
		f.settle(t)
		return len(sink.drain(t))
	}
	check := func(t *testing.T, name string, to netip.Addr, wantDropped bool) {
		t.Helper()
		before := counters(t, p.Maps)
		got := send(t, to, 3)
		want, dropped := 3, uint64(0)
		if wantDropped {
			want, dropped = 0, 3
		}
		if got != want {
			t.Fatalf("%s: kernel socket got %d of 3, want %d", name, got, want)
		}
		checkDelta(t, before, counters(t, p.Maps), Counters{Seen: 4, Passed: 4 - dropped, ACLDropped: dropped})
	}
	subnet4 := netip.PrefixFrom(link.B.Addr4, 24).Masked()
	host4 := netip.PrefixFrom(link.B.Addr4, 32)
	subnet6 := netip.PrefixFrom(link.B.Addr6, 64).Masked()

	check(t, "no rules", link.A.Addr4, false)
	mustAdd(t, p, ACLRule{Source: subnet4, Port: 7200, Action: Deny})
	check(t, "deny v4 /24", link.A.Addr4, true)
	check(t, "deny v4 /24, traffic over v6", link.A.Addr6, false)
	mustAdd(t, p, ACLRule{Source: host4, Port: 7200, Action: Allow})
	check(t, "allow /32 inside deny /24", link.A.Addr4, false)
	// Each rule counts what it decided, the /24 from a source that is not
	// its base address; rewriting a rule starts its count again.
	wantHits(t, p, map[netip.Prefix]uint64{subnet4: 3, host4: 3})
	mustAdd(t, p, ACLRule{Source: host4, Port: 7200, Action: Allow})
	wantHits(t, p, map[netip.Prefix]uint64{subnet4: 3, host4: 0})
	mustRemove(t, p, host4, 7200)
	check(t, "allow /32 removed", link.A.Addr4, true)
	mustRemove(t, p, subnet4, 7200)
	check(t, "deny removed", link.A.Addr4, false)
	if err := p.RemoveACLRule(subnet4, 7200); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing a missing rule: %v, want ErrNotFound", err)
	}

	// IPv6, any-port rule; the marker goes over IPv4 so it still passes.
	mustAdd(t, p, ACLRule{Source: subnet6, Port: 0, Action: Deny})
	check(t, "deny v6 /64 any port", link.A.Addr6, true)
	// A rule for the port beats any-port rules, even with a shorter prefix.
	mustAdd(t, p, ACLRule{Source: netip.MustParsePrefix("fd00::/8"), Port: 7200, Action: Allow})
	check(t, "port rule before any-port rule", link.A.Addr6, false)

	rules, err := p.ACLRules()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(rules, func(a, b ACLRule) int { return a.Source.Bits() - b.Source.Bits() })
	want := []ACLRule{
		{Source: netip.MustParsePrefix("fd00::/8"), Port: 7200, Action: Allow, Hits: 3},
		{Source: subnet6, Port: 0, Action: Deny, Hits: 3},
	}
	if !slices.Equal(rules, want) {
		t.Fatalf("ACLRules() = %+v, want %+v", rules, want)
	}
	mustRemove(t, p, subnet6, 0)
	mustRemove(t, p, netip.MustParsePrefix("fd00::/8"), 7200)
	check(t, "all removed", link.A.Addr6, false)

	if err := p.AddACLRule(ACLRule{Source: subnet4, Action: 7}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad action: %v, want ErrInvalid", err)
	}
	if err := p.AddACLRule(ACLRule{Action: Deny}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero prefix: %v, want ErrInvalid", err)
	}
}

func mustAdd(t *testing.T, p *Program, r ACLRule) {
	t.Helper()
	if err := p.AddACLRule(r); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, p *Program, source netip.Prefix, port uint16) {
	t.Helper()
	if err := p.RemoveACLRule(source, port); err != nil {
		t.Fatal(err)
	}
}

// v4-mapped prefixes are IPv4 rules.
func TestACLKeyMapsIPv4(t *testing.T) {
	a, err := aclKey(netip.MustParsePrefix("10.1.2.0/24"), 53)
	if err != nil {
		t.Fatal(err)
	}
	b, err := aclKey(netip.MustParsePrefix("::ffff:10.1.2.0/120"), 53)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a.Prefixlen != 16+96+24 || a.Port != [2]uint8{0, 53} {
		t.Fatalf("keys %+v and %+v", a, b)
	}
}

// wantHits checks the hit counts of p's rules, by source prefix.
func wantHits(t *testing.T, p *Program, want map[netip.Prefix]uint64) {
	t.Helper()
	rules, err := p.ACLRules()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[netip.Prefix]uint64, len(rules))
	for _, r := range rules {
		got[r.Source] = r.Hits
	}
	if !maps.Equal(got, want) {
		t.Fatalf("ACL hits by rule = %v, want %v", got, want)
	}
}
