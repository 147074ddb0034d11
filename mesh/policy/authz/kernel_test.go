package authz

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/topo"
)

// udpIn opens a kernel UDP socket on port inside host's namespace.
func udpIn(t *testing.T, host *topo.Host, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := host.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}); err != nil {
		t.Fatalf("UDP socket on %d in %s: %v", port, host.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// received reads what is queued on c, waiting at most bound for the first
// datagram when want > 0 (a bound against hangs, not a timing check).
func received(t *testing.T, c *net.UDPConn, bound time.Duration) int {
	t.Helper()
	n := 0
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(bound))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n
			}
			t.Fatal(err)
		}
		n++
		bound = time.Millisecond // the rest is already queued
	}
}

// The compiled L4 rules, applied to the XDP program attached in a fresh
// namespace, drop the denied source's datagrams in the kernel, count them
// for the rule, and stop dropping once a reloaded policy allows the source.
func TestL4RulesOnTheKernel(t *testing.T) {
	topo.RequireRoot(t)
	link := topo.Pair(t, topo.Config{})
	var prog *bpf.Program
	if err := link.A.Host.Do(func() (err error) {
		prog, err = bpf.Attach(link.A.Iface, bpf.Options{})
		return err
	}); err != nil {
		t.Fatalf("attaching the XDP program to %s: %v", link.A.Iface, err)
	}
	t.Cleanup(func() {
		if err := prog.Close(); err != nil {
			t.Error(err)
		}
	})
	const port, markerPort = 7300, 7301
	sink, marker := udpIn(t, link.A.Host, port), udpIn(t, link.A.Host, markerPort)
	var out *net.UDPConn
	if err := link.B.Host.Do(func() (err error) {
		out, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	// send n datagrams to the policy's port and a marker after them, and
	// return how many of the n arrived once the marker did
	send := func(n int) int {
		t.Helper()
		to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(link.A.Addr4, port))
		for i := range n {
			if _, err := out.WriteToUDP([]byte(fmt.Sprint("call ", i)), to); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := out.WriteToUDP([]byte("marker"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(link.A.Addr4, markerPort))); err != nil {
			t.Fatal(err)
		}
		if received(t, marker, 10*time.Second) != 1 {
			t.Fatal("the marker did not arrive")
		}
		return received(t, sink, time.Millisecond)
	}
	if got := send(3); got != 3 { // also resolves ARP
		t.Fatalf("before any policy %d of 3 arrived", got)
	}

	apply := func(text string) (*Policy, []L4Rule) {
		t.Helper()
		spec, err := Parse("policy.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		p, err := Compile(spec, shopMethods, 1)
		if err != nil {
			t.Fatal(err)
		}
		l4 := p.L4(port)
		if _, _, err := SyncACL(prog.Maps, port, l4); err != nil {
			t.Fatal(err)
		}
		return p, l4
	}
	subnet := netip.PrefixFrom(link.B.Addr4, 24).Masked()
	gateway := subnet.Addr().Next() // a hole in the deny that is not the client
	if gateway == link.B.Addr4 {
		gateway = gateway.Next()
	}
	p, l4 := apply(fmt.Sprintf(`rules:
  - name: gateway
    action: allow
    sources: [%v]
  - name: client-net
    action: deny
    sources: [%v]
`, gateway, subnet))
	if len(l4) != 2 {
		t.Fatalf("compiled %+v, want the deny and its one-host hole", l4)
	}
	before, err := prog.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got := send(5); got != 0 {
		t.Fatalf("%d of 5 datagrams from the denied subnet arrived", got)
	}
	after, err := prog.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.ACLDropped - before.ACLDropped; d != 5 {
		t.Fatalf("the program counted %d ACL drops, want 5", d)
	}
	acl, err := prog.ACLRules()
	if err != nil {
		t.Fatal(err)
	}
	if h := p.L4Hits(acl, port, l4); len(h) != 1 || h[0] != (RuleHits{Rule: 1, Name: "client-net", Drops: 5}) {
		t.Fatalf("L4Hits = %+v, want 5 drops for client-net", h)
	}

	// A reload that allows the client host opens the kernel path again.
	apply(fmt.Sprintf(`rules:
  - name: client
    action: allow
    sources: [%v]
  - name: client-net
    action: deny
    sources: [%v]
`, link.B.Addr4, subnet))
	if got := send(5); got != 5 {
		t.Fatalf("after the reload %d of 5 arrived", got)
	}
	// The empty policy leaves no entry for the port.
	apply("")
	acl, err = prog.ACLRules()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range acl {
		if r.Port == port {
			t.Fatalf("the empty policy left %+v", r)
		}
	}
	if got := send(2); got != 2 {
		t.Fatalf("with the empty policy %d of 2 arrived", got)
	}
}
