package bpf

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
)

// flow is a kernel UDP socket in B whose datagrams to one port of A land on
// the receive queue of one server: veth hands a frame to the peer's RX
// queue of the TX queue it was sent on, and the TX queue of an unconnected
// UDP socket's datagram is the hash of its flow. findFlow tries new
// sockets (new source ports) until one lands on the server's queue.
type flow struct {
	*udpSender
	port uint16
	seq  int
}

func findFlow(t *testing.T, link *topo.Link, srv *server, sink *udpSink, port uint16) *flow {
	t.Helper()
	for try := range 64 {
		f := &flow{udpSender: newSender(t, link.B.Host), port: port}
		probe := fmt.Sprintf("probe-%d", try)
		f.send(t, link.A.Addr4, port, []byte(probe))
		deadline := time.Now().Add(waitBound)
		for landed := false; !landed; {
			select {
			case line := <-srv.lines:
				if line == fmt.Sprintf("got %d %s", port, probe) {
					return f
				}
				continue
			default:
			}
			if got := sink.poll(t); got != nil {
				landed = string(got) == probe // another queue: try another flow
				continue
			}
			if time.Now().After(deadline) {
				t.Fatalf("probe %q to port %d reached neither %s nor the kernel socket", probe, port, srv.name)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	t.Fatalf("no flow of 64 landed on the queue of %s", srv.name)
	return nil
}

// deliver sends n datagrams on f and expects srv to receive each of them.
func (f *flow) deliver(t *testing.T, link *topo.Link, srv *server, n int) {
	t.Helper()
	for range n {
		f.seq++
		msg := fmt.Sprintf("msg-%d-%d", f.port, f.seq)
		f.send(t, link.A.Addr4, f.port, []byte(msg))
		srv.expect(fmt.Sprintf("got %d %s", f.port, msg), waitBound)
	}
}

// untilKernel sends on f until the kernel socket receives one of the
// datagrams, and returns how many it sent (bounded polling: no timing is
// asserted).
func (f *flow) untilKernel(t *testing.T, link *topo.Link, sink *udpSink, why string) int {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for sent := 1; ; sent++ {
		f.seq++
		f.send(t, link.A.Addr4, f.port, []byte(fmt.Sprintf("fallback-%d", f.seq)))
		time.Sleep(20 * time.Millisecond)
		if got := sink.drain(t); len(got) > 0 {
			return sent
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d never reached the kernel socket %s", f.port, why)
		}
	}
}

// untilServer sends on f until srv receives one of the datagrams.
func (f *flow) untilServer(t *testing.T, link *topo.Link, srv *server, why string) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	prefix := fmt.Sprintf("got %d resume-", f.port)
	for {
		f.seq++
		f.send(t, link.A.Addr4, f.port, []byte(fmt.Sprintf("resume-%d", f.seq)))
		timer := time.NewTimer(20 * time.Millisecond)
	drain:
		for {
			select {
			case line := <-srv.lines:
				if strings.HasPrefix(line, prefix) {
					timer.Stop()
					return
				}
			case <-timer.C:
				break drain
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d never reached %s %s", f.port, srv.name, why)
		}
	}
}

func inspect(t *testing.T, ep topo.Endpoint) Attachment {
	t.Helper()
	var a Attachment
	if err := ep.Host.Do(func() (err error) {
		a, err = Inspect(ep.Iface)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return a
}

func slotCounters(t *testing.T, ep topo.Endpoint, slot int) SlotCounters {
	t.Helper()
	var c SlotCounters
	if err := ep.Host.Do(func() error {
		m, err := OpenAttached(ep.Iface)
		if err != nil {
			return err
		}
		defer m.Close()
		c, err = m.SlotCounters(slot)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// Three servers, each a process of its own (two started by separate `ip
// netns exec` runs, so each has its own mount namespace and /sys, one of
// them in a time namespace whose CLOCK_MONOTONIC is a day ahead; one
// started from the test's mount namespace), share the program of one
// interface, each with its own port and queue. A server killed with
// SIGKILL stops being steered and its port reaches the kernel, the others
// keep receiving; restarted, it is steered at once; a stopped server
// (SIGSTOP) goes stale and its port reaches the kernel until it resumes;
// with every server gone the interface has no XDP program.
func TestServersShareInterface(t *testing.T) {
	link := topo.Pair(t, topo.Config{Queues: 3})
	ports := []uint16{7401, 7402, 7403}
	var sinks []*udpSink
	for _, port := range ports {
		sinks = append(sinks, newSink(t, link.A.Host, port))
	}
	srv := []*server{
		startServer(t, link.A, viaNetnsExec, ports[0], 0),
		startServer(t, link.A, viaSetns, ports[1], 1),
		startServer(t, link.A, viaTimens, ports[2], 2),
	}
	if !srv[0].loaded || srv[1].loaded || srv[2].loaded {
		t.Fatalf("loaded: %v %v %v; want only the first server to load the program", srv[0].loaded, srv[1].loaded, srv[2].loaded)
	}
	if srv[2].timens != "24h0m0s" || srv[0].timens != "0s" {
		t.Fatalf("time namespace offsets %s and %s; want the third server's clock a day ahead, the first's not", srv[2].timens, srv[0].timens)
	}
	slots := map[int]bool{}
	for _, s := range srv {
		if s.prog != srv[0].prog || s.mode != "native" {
			t.Fatalf("%s runs program %d in %s mode; want %d, native", s.name, s.prog, s.mode, srv[0].prog)
		}
		slots[s.slot] = true
	}
	if len(slots) != 3 {
		t.Fatalf("slots %d %d %d are not distinct", srv[0].slot, srv[1].slot, srv[2].slot)
	}
	if got := xdpShown(t, link.A.Host, link.A.Iface); got != "xdp" {
		t.Fatalf("ip link shows %q, want xdp", got)
	}
	a := inspect(t, link.A)
	if !a.Zerohop || a.ProgramID != srv[0].prog || a.LinkID == 0 || len(a.Slots) != 3 || len(a.Services) != 3 {
		t.Fatalf("Inspect = %+v; want the zerohop program %d with a link, 3 slots and 3 services", a, srv[0].prog)
	}

	// A server about to start sees which queues the others hold.
	watcher := join(t, link.A, Options{})
	if q, err := watcher.QueuesOfOthers(); err != nil || !slices.Equal(q, []int{0, 1, 2}) {
		t.Fatalf("QueuesOfOthers = %v, %v; want [0 1 2]", q, err)
	}

	var flows []*flow
	for i, s := range srv {
		flows = append(flows, findFlow(t, link, s, sinks[i], ports[i]))
	}
	for i, s := range srv {
		flows[i].deliver(t, link, s, 20)
	}

	// SIGKILL: the kernel closes the socket (and so empties its XSKMAP
	// entry) and drops the slot lock; the port goes to the kernel.
	start := time.Now()
	srv[1].kill9()
	sent := flows[1].untilKernel(t, link, sinks[1], "after its server was killed")
	t.Logf("SIGKILL: the port reached the kernel after %v (%d datagrams sent)", time.Since(start), sent)
	flows[0].deliver(t, link, srv[0], 20)
	flows[2].deliver(t, link, srv[2], 20)
	if q, err := watcher.QueuesOfOthers(); err != nil || !slices.Equal(q, []int{0, 2}) {
		t.Fatalf("QueuesOfOthers after a kill = %v, %v; want [0 2]", q, err)
	}
	if c := slotCounters(t, link.A, srv[1].slot); c.NoSocket+c.Stale == 0 {
		t.Fatalf("the killed server's slot counted %+v; want its port's packets as NoSocket or Stale", c)
	}

	// Restarted (through another `ip netns exec`), it is steered from its
	// first datagram on.
	srv[1] = startServer(t, link.A, viaNetnsExec, ports[1], 1)
	if srv[1].loaded || srv[1].prog != srv[0].prog {
		t.Fatalf("the restarted server loaded %v, program %d; want it to join %d", srv[1].loaded, srv[1].prog, srv[0].prog)
	}
	flows[1].deliver(t, link, srv[1], 20)

	// SIGSTOP: the socket stays open, the heartbeat stops; after
	// StaleAfter the program passes the port to the kernel, counted as
	// stale. SIGCONT: the next heartbeat steers it again.
	before := slotCounters(t, link.A, srv[2].slot)
	start = time.Now()
	srv[2].signal(syscall.SIGSTOP)
	sent = flows[2].untilKernel(t, link, sinks[2], "while its server was stopped")
	t.Logf("SIGSTOP: the port reached the kernel after %v (%d datagrams sent; StaleAfter %v)", time.Since(start), sent, StaleAfter)
	if c := slotCounters(t, link.A, srv[2].slot); c.Stale <= before.Stale {
		t.Fatalf("the stopped server's slot counted %+v (before %+v); want Stale to grow", c, before)
	}
	flows[0].deliver(t, link, srv[0], 5)
	flows[1].deliver(t, link, srv[1], 5)
	start = time.Now()
	srv[2].signal(syscall.SIGCONT)
	flows[2].untilServer(t, link, srv[2], "after it resumed")
	t.Logf("SIGCONT: steered again after %v", time.Since(start))

	// Everyone gone: the last descriptor of the link closes and the
	// kernel detaches the program.
	if err := watcher.Close(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for _, s := range srv {
		s.kill9()
	}
	deadline := time.Now().Add(waitBound)
	for xdpShown(t, link.A.Host, link.A.Iface) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("XDP still attached after every server was killed:\n%s", ipLinkShow(t, link.A.Host, link.A.Iface))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("all killed: no XDP program after %v", time.Since(start))
	if a := inspect(t, link.A); a.ProgramID != 0 {
		t.Fatalf("Inspect after all servers died: %+v, want nothing attached", a)
	}
	// A new server attaches afresh at once.
	s := startServer(t, link.A, viaNetnsExec, ports[0], 0)
	if !s.loaded || s.prog == srv[0].prog {
		t.Fatalf("a server after all were gone: loaded %v, program %d; want a new program", s.loaded, s.prog)
	}
	flows[0].deliver(t, link, s, 5)
}
