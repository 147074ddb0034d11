package runtime

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
	"google.golang.org/protobuf/encoding/protowire"
)

// threads is this process's OS thread count.
func threads(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// heapInUse is the live heap after two collections (sync.Pools emptied).
func heapInUse() uint64 {
	goruntime.GC()
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapAlloc
}

// tcpGWIRServer echoes GWIR requests on a TCP listener, one goroutine per
// connection: the kernel's TCP stack and proto.Stream, nothing of the
// client's.
func tcpGWIRServer(t testing.TB) (addr string, conns *atomic.Int64) {
	t.Helper()
	return tcpGWIRServerV1(t, false)
}

// tcpGWIRServerV1 is tcpGWIRServer; with v1 it answers BAD_FRAME to an
// extension block, as a server built before it does.
func tcpGWIRServerV1(t testing.TB, v1 bool) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				hdr := make([]byte, proto.HeaderLen)
				out := make([]byte, proto.MaxFrameLen)
				for {
					if _, err := io.ReadFull(r, hdr); err != nil {
						return
					}
					frame := make([]byte, proto.HeaderLen+int(proto.Frame(hdr).PayloadLen()))
					copy(frame, hdr)
					if _, err := io.ReadFull(r, frame[proto.HeaderLen:]); err != nil {
						return
					}
					f, err := proto.Parse(frame)
					if err != nil {
						return
					}
					if v1 && f.HasExt() {
						reply, err := proto.EncodeError(out, f.RequestID(), f.MethodID(), proto.StatusBadFrame, "reserved flags set")
						if err != nil {
							return
						}
						if _, err := c.Write(reply); err != nil {
							return
						}
						continue
					}
					reply, err := proto.EncodeResponse(out, f.RequestID(), f.MethodID(), proto.StatusOK, f.Payload())
					if err != nil {
						return
					}
					if _, err := c.Write(reply); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// TestEngineThousandEndpoints: 1,000 servers called round-robin from one
// engine, over UDP and over TCP, cost no thread beyond the engine's loop
// (+2 of the Go runtime's own), and an idle endpoint costs under 2 KiB.
func TestEngineThousandEndpoints(t *testing.T) { onBothPaths(t, testEngineThousandEndpoints) }

func testEngineThousandEndpoints(t *testing.T) {
	const n = 1000
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			addrs := make([]string, n)
			for i := range addrs {
				if transport == "udp" {
					addrs[i] = startGWIRServer(t, serverConfig{untracked: true}).addr.String()
				} else {
					addrs[i], _ = tcpGWIRServer(t)
				}
			}
			time.Sleep(50 * time.Millisecond) // let the servers' goroutines park
			before := threads(t)
			heapBefore := heapInUse()
			e := testEngine(t)
			clients := make([]*Client, n)
			for i, a := range addrs {
				c, err := Dial(transport, a, WithEngine(e))
				if err != nil {
					t.Fatal(err)
				}
				clients[i] = c
			}
			ctx := testContext(t)
			buf := make([]byte, 0, 64)
			for round := 0; round < 3; round++ {
				for i, c := range clients {
					p := payloadFor(round*n + i)
					r, err := c.Call(ctx, methodEcho, p, buf)
					if err != nil || !bytes.Equal(r.Payload, p) {
						t.Fatalf("round %d endpoint %d (%s): %x, %v", round, i, addrs[i], r.Payload, err)
					}
				}
			}
			if got, limit := threads(t), before+1+2; got > limit {
				t.Errorf("%d threads with %d endpoints on one engine, want at most %d (before: %d)", got, n, limit, before)
			}
			if st := e.Stats(); st.Endpoints != n {
				t.Errorf("engine holds %d endpoints, want %d", st.Endpoints, n)
			}
			if transport == "udp" {
				perEndpoint := (int64(heapInUse()) - int64(heapBefore)) / n
				t.Logf("%d bytes of heap per idle UDP endpoint (with its Client)", perEndpoint)
				if perEndpoint > 2048 {
					t.Errorf("%d bytes per idle endpoint, want ≤ 2 KiB", perEndpoint)
				}
			}
			for _, c := range clients {
				c.Close()
			}
		})
	}
}

// TestUndrainedDoneDoesNotStall: a caller that never receives from its
// Done channel delays only its own completions; other calls on the same
// Client complete, and Close returns.
func TestUndrainedDoneDoesNotStall(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	e := testEngine(t)
	c := dialOn(t, e, srv.addr.String())
	ctx := testContext(t)
	stuck := make(chan *Call, 1)
	const parked = 20
	for i := range parked {
		c.Go(ctx, methodEcho, payloadFor(i), nil, stuck)
	}
	for i := 0; i < 2000 && e.Stats().Delayed < parked-1; i++ {
		time.Sleep(time.Millisecond)
	}
	if d := e.Stats().Delayed; d < parked-1 {
		t.Fatalf("%d completions delayed, want %d", d, parked-1)
	}
	for i := range 200 {
		if _, err := c.Call(ctx, methodEcho, payloadFor(i), nil); err != nil {
			t.Fatalf("call %d behind an undrained Done channel: %v", i, err)
		}
	}
	// The parked completions arrive once the caller receives.
	for i := range parked {
		select {
		case call := <-stuck:
			if call.Err != nil {
				t.Fatal(call.Err)
			}
			call.Release()
		case <-time.After(10 * time.Second):
			t.Fatalf("parked completion %d never delivered", i)
		}
	}
	// A second client leaves completions undelivered and closes: Close
	// returns and the engine counts what nobody received.
	c2 := dialOn(t, e, srv.addr.String())
	stuck2 := make(chan *Call, 1)
	for i := range parked {
		c2.Go(ctx, methodEcho, payloadFor(i), nil, stuck2)
	}
	for i := 0; i < 2000 && e.Stats().Delayed < 2*parked-2; i++ {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- c2.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with completions undelivered")
	}
	if u := e.Stats().Undelivered; u != parked-1 {
		t.Errorf("%d completions counted undelivered, want %d", u, parked-1)
	}
}

// TestDeadlinePropagation: the server sees the caller's budget in the
// DEADLINE tag; a call whose deadline has passed is never sent; a call to a
// server that never answers ends at its deadline, not after the full
// retransmission schedule.
func TestDeadlinePropagation(t *testing.T) { onBothPaths(t, testDeadlinePropagation) }

func testDeadlinePropagation(t *testing.T) {
	srv, err := Listen("udp", "127.0.0.1:0", WithBackend(BackendUring), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	var budgets atomic.Int64
	var calls atomic.Int64
	srv.Handle("test.D/Budget", func(req *Request, resp *Response) {
		calls.Add(1)
		if d, ok := req.Deadline(); ok {
			budgets.Store(int64(d.Sub(req.Arrival())))
		}
		resp.AppendVarint(1, uint64(req.Attempt()))
	})
	srv.Handle("test.D/Never", func(req *Request, resp *Response) { calls.Add(1); resp.SetStatus(0) })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := dialOn(t, testEngine(t), srv.Addr().String(), WithCaller("svc-test"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, "test.D/Budget", nil, nil); err != nil {
		t.Fatal(err)
	}
	if b := time.Duration(budgets.Load()); b <= 0 || b > 500*time.Millisecond {
		t.Fatalf("server saw a budget of %v, want (0, 500ms]", b)
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	before := calls.Load()
	if _, err := c.Call(expired, "test.D/Budget", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired call: %v", err)
	}
	if calls.Load() != before {
		t.Fatal("a call whose deadline had passed reached the server")
	}

	// A server that drops every request: the call ends at its deadline.
	silent := startGWIRServer(t, serverConfig{})
	cs := dialOn(t, testEngine(t), silent.addr.String(), WithRetransmission(10*time.Millisecond, time.Second, 0))
	short, cancel3 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel3()
	_, err = cs.Call(short, methodSilent, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call to a silent server: %v", err)
	}
	if st := cs.Stats(); st.Requests+st.Retransmits > 6 {
		t.Errorf("%d copies sent within a 100 ms deadline at a 10 ms RTO doubling", st.Requests+st.Retransmits)
	}
}

// TestOneway: a oneway call reaches its handler, gets no reply and is
// never retransmitted.
func TestOneway(t *testing.T) { onBothPaths(t, testOneway) }

func testOneway(t *testing.T) {
	srv, err := Listen("udp", "127.0.0.1:0", WithBackend(BackendUring), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	srv.Handle("test.O/Note", func(req *Request, resp *Response) {
		if req.Oneway() {
			got.Add(1)
		}
		resp.AppendVarint(1, 1) // discarded: the caller wants no reply
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := dialOn(t, testEngine(t), srv.Addr().String())
	ctx := testContext(t)
	for i := range 10 {
		if err := c.Oneway(ctx, "test.O/Note", payloadFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2000 && got.Load() < 10; i++ {
		time.Sleep(time.Millisecond)
	}
	if got.Load() != 10 {
		t.Fatalf("%d oneway calls reached the handler, want 10", got.Load())
	}
	time.Sleep(50 * time.Millisecond) // any reply or retransmission would show by now
	st := c.Stats()
	if st.Replies != 0 || st.Retransmits != 0 || st.Duplicates != 0 {
		t.Errorf("oneway stats %+v: want no reply and no retransmission", st)
	}
	if s := srv.Stats().Total; s.Oneway != 10 || s.TX != 0 {
		t.Errorf("server: %d oneway, %d replies sent", s.Oneway, s.TX)
	}
}

// TestExtFallback: a server built before the extension block answers
// BAD_FRAME to it; the client resends the call without the block, it
// succeeds, and later calls to that server go without the block at once.
func TestExtFallback(t *testing.T) { onBothPaths(t, testExtFallback) }

func testExtFallback(t *testing.T) {
	old := startGWIRServer(t, serverConfig{v1: true})
	c := dialTest(t, old.addr.String(), WithCaller("svc"))
	ctx := testContext(t)
	p := payloadFor(3)
	if r, err := c.Call(ctx, methodEcho, p, nil); err != nil || !bytes.Equal(r.Payload, p) {
		t.Fatalf("first call to a v1 server: %x, %v", r.Payload, err)
	}
	if n := old.extSeen.Load(); n != 1 {
		t.Fatalf("the v1 server saw %d requests with EXT, want the one that was refused", n)
	}
	for i := range 5 {
		if _, err := c.Call(ctx, methodEcho, payloadFor(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := old.extSeen.Load(); n != 1 {
		t.Fatalf("later calls still carried EXT (%d seen)", n)
	}
	// A server that speaks EXT keeps getting it.
	cur := startGWIRServer(t, serverConfig{})
	c2 := dialTest(t, cur.addr.String())
	for range 3 {
		if _, err := c2.Call(ctx, methodEcho, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := cur.extSeen.Load(); n != 3 {
		t.Fatalf("a current server saw %d requests with EXT, want 3", n)
	}
}

// TestEngineTCP: the stream transport on the engine against a zerohop
// server's TCP listener, sync and pipelined, with replies matched by id.
func TestEngineTCP(t *testing.T) {
	srv, err := Listen("udp", "127.0.0.1:0", WithBackend(BackendUring), WithTCP(), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle(methodEcho, func(req *Request, resp *Response) { resp.Write(req.Payload()) })
	srv.HandleBlocking("test.T/Slow", func(req *Request, resp *Response) {
		time.Sleep(time.Millisecond)
		resp.Write(req.Payload())
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	e := testEngine(t)
	c, err := Dial("tcp", srv.Addr().String(), WithEngine(e))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	p := payloadFor(9)
	if r, err := c.Call(ctx, methodEcho, p, nil); err != nil || !bytes.Equal(r.Payload, p) {
		t.Fatalf("TCP call: %x, %v", r.Payload, err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("TCP ping: %v", err)
	}
	const n = 2000
	done := make(chan *Call, n)
	want := map[*Call]int{}
	for i := range n {
		method := methodEcho
		if i%50 == 0 {
			method = "test.T/Slow"
		}
		want[c.Go(ctx, method, payloadFor(i), nil, done)] = i
	}
	for range n {
		call := <-done
		if call.Err != nil {
			t.Fatal(call.Err)
		}
		if v, _ := protowire.ConsumeVarint(call.Reply.Payload[1:]); int(v) != want[call] {
			t.Fatalf("reply %x matched to call %d", call.Reply.Payload, want[call])
		}
		delete(want, call)
		call.Release()
	}
	if st := srv.Stats().Total; st.Served["tcp"] < n {
		t.Errorf("server served %d requests over TCP, want ≥ %d", st.Served["tcp"], n)
	}
}

// TestOnewayReturnsOnceSent: a oneway call completes once its datagram
// or stream write is done, not after a retransmission timeout — on the
// caller's direct send (the loop asleep), on the loop's sends (calls
// queued while it runs) and over TCP. The RTO is an hour, so a Oneway
// that waits for it is still waiting when the generous bound below ends.
func TestOnewayReturnsOnceSent(t *testing.T) {
	srv, err := Listen("udp", "127.0.0.1:0", WithBackend(BackendUring), WithTCP(), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	srv.Handle("test.O/Note", func(req *Request, resp *Response) { got.Add(1) })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	e := testEngine(t, WithClientBusyPoll(0))
	ctx := context.Background() // no deadline: nothing but the send may end a oneway
	for _, network := range []string{"udp", "tcp"} {
		c, err := Dial(network, srv.Addr().String(), WithEngine(e), WithRetransmission(time.Hour, time.Hour, 3))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		before := got.Load()
		done := make(chan error, 1)
		go func() {
			for i := range 5 {
				time.Sleep(5 * time.Millisecond) // let the loop fall asleep: the caller sends itself
				if err := c.Oneway(ctx, "test.O/Note", payloadFor(i)); err != nil {
					done <- err
					return
				}
			}
			errs := make(chan error, 20)
			for i := range 20 { // concurrent: most are queued while the loop runs
				go func() { errs <- c.Oneway(ctx, "test.O/Note", payloadFor(i)) }()
			}
			for range 20 {
				if err := <-errs; err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: Oneway: %v", network, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: 25 Oneway calls not all returned after 20 s at a 1 h RTO: they wait for the timer", network)
		}
		for i := 0; i < 2000 && got.Load()-before < 25; i++ {
			time.Sleep(time.Millisecond)
		}
		if n := got.Load() - before; n != 25 {
			t.Errorf("%s: %d oneway calls reached the handler, want 25", network, n)
		}
		if st := c.Stats(); st.Retransmits != 0 || st.InFlight != 0 {
			t.Errorf("%s: stats %+v: want no retransmission and nothing in flight", network, st)
		}
	}
}

// TestTCPConnectionSlotReuse: a connection closed while the ring still
// holds operations on it (its Client closed with a receive armed) frees
// its slot; the next connection, often in that same slot, must not be
// hit by the old one's late completions (a receive ended by the
// shutdown reads as "the server closed the connection").
func TestTCPConnectionSlotReuse(t *testing.T) {
	addr, conns := tcpGWIRServer(t)
	e := testEngine(t)
	ctx := testContext(t)
	const n = 200
	failed := 0
	for i := range n {
		c, err := Dial("tcp", addr, WithEngine(e))
		if err != nil {
			t.Fatal(err)
		}
		p := payloadFor(i)
		r, err := c.Call(ctx, methodEcho, p, nil)
		if err != nil || !bytes.Equal(r.Payload, p) {
			failed++
			if failed <= 3 {
				t.Logf("call %d: %x, %v", i, r.Payload, err)
			}
		}
		c.Close()
	}
	t.Logf("%d connections accepted", conns.Load())
	if failed > 0 {
		t.Fatalf("%d/%d calls on fresh connections failed", failed, n)
	}
}

// TestExtFallbackTCP: the resend without the extension block to a TCP
// server that refused it goes on the endpoint's connection (not as a UDP
// datagram to the same address, which nobody answers).
func TestExtFallbackTCP(t *testing.T) {
	addr, _ := tcpGWIRServerV1(t, true)
	c, err := Dial("tcp", addr, WithEngine(testEngine(t)), WithCaller("svc"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		p := payloadFor(i)
		if r, err := c.Call(ctx, methodEcho, p, nil); err != nil || !bytes.Equal(r.Payload, p) {
			t.Fatalf("call %d to a v1 TCP server: %x, %v", i, r.Payload, err)
		}
	}
	if st := c.Stats(); st.Replies != 3 {
		t.Errorf("stats %+v: want 3 replies", st)
	}
}

// silentTCPServer accepts GWIR connections on 127.0.0.1 and reads them
// without ever answering, until the test ends.
func silentTCPServer(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// waitFor polls cond (bounded: 10 s) and reports whether it came true.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestForgetWithCallsInFlight: an endpoint whose last user lets go of it
// while calls to it are still in flight (here a DialService endpoint the
// resolver removed) leaves the loop's table once those calls have ended,
// and over TCP its connection is closed; it used to stay for good.
func TestForgetWithCallsInFlight(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		name := "udp"
		if tcp {
			name = "tcp"
		}
		t.Run(name, func(t *testing.T) { testForgetWithCallsInFlight(t, tcp) })
	}
}

func testForgetWithCallsInFlight(t *testing.T, tcp bool) {
	e := testEngine(t)
	opts := []ClientOption{WithEngine(e), WithRetransmission(time.Second, time.Second, 0)}
	var addr netip.AddrPort
	if tcp {
		addr = silentTCPServer(t)
		opts = append(opts, WithStreamTransport())
	} else {
		addr = startGWIRServer(t, serverConfig{}).addr
	}
	r := &fixedResolver{eps: endpointsOf(addr)}
	c, err := DialService("test.Echo", append(opts, WithResolver(r))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	const n = 16
	done := make(chan *Call, n)
	for i := range n {
		c.Go(ctx, methodSilent, payloadFor(i), nil, done) // never answered
	}
	scs := c.Endpoints()
	if len(scs) != 1 {
		t.Fatalf("%d SubConns, want 1", len(scs))
	}
	ep := scs[0].ep
	if !waitFor(func() bool { return ep.inflight.Load() == n }) {
		t.Fatalf("%d calls in flight, want %d", ep.inflight.Load(), n)
	}
	cl := ep.loop
	r.Set() // the endpoint leaves the service, its calls still in flight
	cancel()
	for range n {
		call := <-done
		if !errors.Is(call.Err, context.Canceled) {
			t.Errorf("call ended with %v, want context.Canceled", call.Err)
		}
		call.Release()
	}
	if !waitFor(func() bool { return cl.addrs.Load() == 0 && cl.tcpConns.Load() == 0 }) {
		t.Fatalf("after its calls ended, the forgotten endpoint is still known: %d addresses in the loop's table, %d TCP connections open",
			cl.addrs.Load(), cl.tcpConns.Load())
	}
	if st := e.Stats(); st.Endpoints != 0 {
		t.Errorf("engine holds %d endpoints, want 0", st.Endpoints)
	}
}

// TestPollClearsAsleep: a loop that passes through Poll is awake, and
// says so itself: callers then queue their calls instead of sending
// their first copies themselves (and waking a loop that is not asleep).
// The loop busy-polls, so it never goes through Idle again; asleep is
// set as Idle leaves it when a completion, not a caller, ends the sleep.
func TestPollClearsAsleep(t *testing.T) {
	e := testEngine(t, WithClientBusyPoll(time.Hour))
	cl := e.loops[0]
	cl.asleep.Store(true)
	if !waitFor(func() bool { return !cl.asleep.Load() }) {
		t.Fatal("the loop kept polling with asleep set: callers keep sending directly to an awake loop")
	}
}

// TestGoDirectSendRelease: Go calls made while the loop sleeps, whose
// callers send the first copies themselves, and whose replies (received
// and released by another goroutine) race those sends: the loop must not
// hand a call back, nor let it be reused, while its caller is still
// sending it. Run it under -race; every reply must carry its own
// request's payload.
func TestGoDirectSendRelease(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{untracked: true})
	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c, err := Dial("udp", srv.addr.String(), WithEngine(e), WithRetransmission(time.Second, time.Second, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	const senders, perSender, closeAfter = 4, 1000, 2000
	done := make(chan *Call, senders*perSender)
	got := make(chan error, 1)
	var closed atomic.Bool
	engineClosed := make(chan struct{})
	go func() {
		seen := make(map[int]bool, senders*perSender)
		var first error
		for k := range senders * perSender {
			if k == closeAfter {
				// The engine closes while callers still send: it must wait
				// for their own sends (from its sockets) to be over.
				closed.Store(true)
				go func() {
					e.Close()
					close(engineClosed)
				}()
			}
			call := <-done
			switch {
			case errors.Is(call.Err, ErrClientClosed) && closed.Load():
			case call.Err != nil:
				first = cmp.Or(first, fmt.Errorf("call: %w", call.Err))
			default:
				p := call.Reply.Payload
				num, typ, n := protowire.ConsumeTag(p)
				i, m := uint64(0), -1
				if n > 0 {
					i, m = protowire.ConsumeVarint(p[n:])
				}
				switch {
				case n < 0 || m < 0 || num != 1 || typ != protowire.VarintType:
					first = cmp.Or(first, fmt.Errorf("reply payload %x is not a request's", p))
				case !bytes.Equal(p, payloadFor(int(i))):
					first = cmp.Or(first, fmt.Errorf("reply payload %x, want %x", p, payloadFor(int(i))))
				case seen[int(i)]:
					first = cmp.Or(first, fmt.Errorf("two replies for request %d", i))
				}
				seen[int(i)] = true
			}
			call.Release()
		}
		got <- first
	}()
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range perSender {
				c.Go(ctx, methodEcho, payloadFor(g*perSender+k), nil, done)
				time.Sleep(500 * time.Microsecond) // let the loop fall asleep
			}
		}()
	}
	wg.Wait()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	<-engineClosed
}

// TestExtStripWaitsForSends: a BAD_FRAME answer to the extension block
// that comes while a copy of the request is still being sent (a SENDMSG
// not completed, or the caller's own first copy) does not rewrite the
// frame under that send, nor fail the call: the block is cut, and the
// call sent again, once no send of it is in flight. On a bare
// clientSource (no loop): the state the loop would be in.
func TestExtStripWaitsForSends(t *testing.T) {
	for _, inFlight := range []string{"sendmsg", "direct"} {
		t.Run(inFlight, func(t *testing.T) {
			c := &Client{cfg: defaultClientConfig()}
			ep := newEndpoint(endpointKey{addr: netip.MustParseAddrPort("127.0.0.1:9")}, nil)
			s := &clientSource{calls: map[uint64]*Call{}, byAddr: map[netip.AddrPort]*endpoint{}, clock: time.Now()}
			call := &Call{client: c, ep: ep, id: 7, kind: proto.KindRequest, Method: methodEcho, heapIndex: -1, ownCh: make(chan *Call, 1)}
			call.Done = call.ownCh
			var xb proto.ExtBuilder
			xb.SetAttempt(0)
			f, err := proto.EncodeRequestExt(make([]byte, 512), call.id, proto.MethodID(methodEcho), 0, &xb, payloadFor(1))
			if err != nil {
				t.Fatal(err)
			}
			call.frame, call.attempts = f, 1
			s.calls[call.id] = call
			ep.inflight.Add(1)
			if inFlight == "sendmsg" {
				call.sending = 1
			} else {
				call.directPending = true
			}
			sent := bytes.Clone(call.frame)
			r, err := proto.EncodeError(make([]byte, 512), call.id, proto.MethodID(methodEcho), proto.StatusBadFrame, "reserved flags set")
			if err != nil {
				t.Fatal(err)
			}
			s.onReply(ep, r, false)
			if call.finished {
				t.Fatalf("the call ended with %v on BAD_FRAME while a copy was in flight, want it sent again without EXT", call.Err)
			}
			if !bytes.Equal(call.frame, sent) {
				t.Fatalf("the frame was rewritten while a copy of it was in flight:\n got %x\nwant %x", []byte(call.frame), sent)
			}
			if !ep.noExt.Load() {
				t.Error("the endpoint is not marked as refusing EXT")
			}
			// Another copy's BAD_FRAME meanwhile changes nothing.
			s.onReply(ep, r, false)
			if call.finished || !bytes.Equal(call.frame, sent) {
				t.Fatalf("a second BAD_FRAME while the cut waits: finished %v (%v), frame %x", call.finished, call.Err, []byte(call.frame))
			}
			// The send ends; the loop's next pass sends the call again.
			call.sending, call.directPending = 0, false
			s.retrySends(s.now())
			if call.frame.HasExt() || !call.stripped {
				t.Fatalf("once no send was in flight the frame still has its extension block (stripped %v)", call.stripped)
			}
			if !call.waitingSlot || call.finished {
				t.Fatalf("the stripped call is not waiting to be sent (waiting %v, finished %v)", call.waitingSlot, call.finished)
			}
		})
	}
}

// afterRecorder is an Interceptor that keeps every After it sees.
type afterRecorder struct {
	mu     sync.Mutex
	afters []AttemptResult
}

func (r *afterRecorder) Before(*Attempt) error { return nil }
func (r *afterRecorder) After(_ *Attempt, res *AttemptResult) {
	r.mu.Lock()
	r.afters = append(r.afters, *res)
	r.mu.Unlock()
}

// TestAfterAtDeadline: a call to a server that never answers, ended by
// its deadline before any retransmission, gives its attempt an After
// (unanswered, ErrNoReply), whether the caller's context or the loop's
// timer sees the deadline first: a breaker counts it as the timeout it
// is. A cancelled call's attempt gets none.
func TestAfterAtDeadline(t *testing.T) {
	silent := startGWIRServer(t, serverConfig{})
	rec := &afterRecorder{}
	c := dialOn(t, testEngine(t), silent.addr.String(), WithRetransmission(10*time.Second, 10*time.Second, 0), WithInterceptors(rec))
	const calls = 20
	for i := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := c.Call(ctx, methodSilent, nil, nil)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want the deadline", i, err)
		}
	}
	// A context that ends with DeadlineExceeded but has no Deadline: only
	// the caller sees it end, the loop has no timer of its own for it.
	const callerSeen = 5
	for i := range callerSeen {
		ctx := &endedContext{done: make(chan struct{})}
		sent := c.Stats().Requests
		call := c.Go(ctx, methodSilent, nil, nil, nil)
		for deadline := time.Now().Add(10 * time.Second); c.Stats().Requests == sent; {
			if time.Now().After(deadline) {
				t.Fatalf("call %d was never sent", i)
			}
			time.Sleep(time.Millisecond)
		}
		close(ctx.done)
		<-call.Done
		if !errors.Is(call.Err, context.DeadlineExceeded) {
			t.Fatalf("caller-seen deadline %d: %v", i, call.Err)
		}
		call.Release()
	}
	// Each copy sent is an attempt, and each got its After (a deadline
	// the loop saw just before it passed sends one more copy first).
	st := c.Stats()
	sent := int(st.Requests + st.Retransmits)
	rec.mu.Lock()
	got := len(rec.afters)
	rec.mu.Unlock()
	if sent < calls+callerSeen || got != sent {
		t.Fatalf("%d Afters for %d copies sent by %d calls ended by their deadline (%d of them seen by the caller only), want one per copy",
			got, sent, calls+callerSeen, callerSeen)
	}
	ctx, cancel := context.WithCancel(context.Background())
	call := c.Go(ctx, methodSilent, nil, nil, nil)
	cancel()
	<-call.Done
	call.Release()
	c.Close() // the loop has handled every op queued before Close's
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.afters) != got {
		t.Errorf("a cancelled call's attempt got an After: %d Afters, was %d", len(rec.afters), got)
	}
	for i, r := range rec.afters {
		if r.Answered || !errors.Is(r.Err, ErrNoReply) {
			t.Errorf("After %d: answered %v, err %v; want unanswered, ErrNoReply", i, r.Answered, r.Err)
		}
	}
}

// endedContext is a context without a deadline that ends, when done is
// closed, with context.DeadlineExceeded.
type endedContext struct {
	context.Context
	done chan struct{}
}

func (c *endedContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *endedContext) Done() <-chan struct{}       { return c.done }
func (c *endedContext) Value(any) any               { return nil }
func (c *endedContext) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
