package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
)

// loopFunc names an event loop's goroutine in stack dumps.
const loopFunc = "engine.(*Loop).run("

// runningLoops waits (bounded) until the number of running event loops is
// want and returns the last count.
func runningLoops(want int) int {
	n := leak.Goroutines(loopFunc)
	for deadline := time.Now().Add(5 * time.Second); n != want && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		n = leak.Goroutines(loopFunc)
	}
	return n
}

// testEngine starts an engine closed at cleanup.
func testEngine(t testing.TB, opts ...EngineOption) *Engine {
	t.Helper()
	if strings.Contains(t.Name()+"/", "/"+loopPath+"/") {
		opts = append(opts[:len(opts):len(opts)], WithCallerLanes(0)) // last: it wins
	}
	e, err := NewEngine(opts...)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// Synchronous UDP calls take a caller lane when one is free, and go
// through the loop otherwise: onBothPaths runs a test once each way, the
// second as subtest "loop", where testEngine makes engines without lanes.
const lanePath, loopPath = "lanes", "loop"

func onBothPaths(t *testing.T, test func(t *testing.T)) {
	t.Run(lanePath, test)
	t.Run(loopPath, test)
}

// dialTest dials addr on an engine of the test's own.
func dialTest(t testing.TB, addr string, opts ...ClientOption) *Client {
	t.Helper()
	return dialOn(t, testEngine(t), addr, opts...)
}

func dialOn(t testing.TB, e *Engine, addr string, opts ...ClientOption) *Client {
	t.Helper()
	c, err := Dial("udp", addr, append([]ClientOption{WithEngine(e)}, opts...)...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// payloadFor encodes i as field 1 (varint) and a string as field 2.
func payloadFor(i int) []byte {
	p := protowire.AppendTag(nil, 1, protowire.VarintType)
	p = protowire.AppendVarint(p, uint64(i))
	p = protowire.AppendTag(p, 2, protowire.BytesType)
	return protowire.AppendString(p, fmt.Sprintf("call %d", i))
}

func TestClientCall(t *testing.T) { onBothPaths(t, testClientCall) }

func testClientCall(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	// A timeout far above any round trip: a retransmission below would be
	// a bug, not a slow machine.
	c := dialTest(t, srv.addr.String(), WithMinRTO(time.Second), WithRetransmission(time.Second, time.Second, 8))
	ctx := testContext(t)

	payload := payloadFor(42)
	buf := make([]byte, 0, 256)
	reply, err := c.Call(ctx, methodEcho, payload, buf)
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	if reply.Status != proto.StatusOK || !bytes.Equal(reply.Payload, payload) {
		t.Fatalf("echo reply = %v %x, want OK %x", reply.Status, reply.Payload, payload)
	}
	if &reply.Payload[0] != &buf[:1][0] {
		t.Error("reply payload not copied into the caller's buf although it had room")
	}

	// A buf too small is grown; nil works too.
	reply, err = c.Call(ctx, methodEcho, payload, make([]byte, 0, 2))
	if err != nil || !bytes.Equal(reply.Payload, payload) {
		t.Fatalf("echo into a small buf = %x, %v", reply.Payload, err)
	}
	reply, err = c.Call(ctx, methodEcho, nil, nil)
	if err != nil || len(reply.Payload) != 0 {
		t.Fatalf("empty echo = %x, %v", reply.Payload, err)
	}

	// Error statuses.
	reply, err = c.Call(ctx, methodFail, []byte("x"), nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != statusTestApp || se.Message != "boom: x" {
		t.Fatalf("fail: err = %v, want StatusError %v %q", err, statusTestApp, "boom: x")
	}
	if reply.Status != statusTestApp {
		t.Errorf("fail: reply status %v", reply.Status)
	}
	if !errors.Is(err, &StatusError{Status: statusTestApp}) || errors.Is(err, &StatusError{Status: proto.StatusDenied}) ||
		!errors.Is(err, &StatusError{Status: statusTestApp, Message: "boom: x"}) {
		t.Errorf("errors.Is on %v does not match by status", err)
	}
	if st, ok := StatusOf(err); !ok || st != statusTestApp {
		t.Errorf("StatusOf = %v %v", st, ok)
	}
	_, err = c.Call(ctx, methodDeny, nil, nil)
	if !errors.As(err, &se) || se.Status != proto.StatusDenied || se.Message != "" {
		t.Fatalf("deny: err = %v", err)
	}
	_, err = c.Call(ctx, "test.Echo/Nope", nil, nil)
	if !errors.As(err, &se) || se.Status != proto.StatusUnknownMethod || se.Message != "no such method" {
		t.Fatalf("unknown method: err = %v", err)
	}

	// Ping: serving, then draining.
	if st, err := c.Ping(ctx); err != nil || st != proto.PongServing {
		t.Fatalf("Ping = %v, %v; want serving", st, err)
	}
	srv.draining.Store(true)
	if st, err := c.Ping(ctx); err != nil || st != proto.PongDraining {
		t.Fatalf("Ping = %v, %v; want draining", st, err)
	}

	// A payload no datagram can carry fails before anything is sent.
	if _, err := c.Call(ctx, methodEcho, make([]byte, proto.MaxPayloadUDP4+1), nil); !errors.Is(err, proto.ErrPayloadTooLarge) {
		t.Errorf("oversized payload: %v", err)
	}

	st := c.Stats()
	if st.Replies != 8 || st.Duplicates != 0 || st.Malformed != 0 || st.Retransmits != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestClientPipelined keeps 64 calls outstanding until 10,000 completed and
// checks that each was delivered exactly once with its own payload.
func TestClientPipelined(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	c := dialTest(t, srv.addr.String())
	pipeline(t, c, 10000, 64)
}

func pipeline(t *testing.T, c *Client, total, outstanding int) {
	t.Helper()
	ctx := testContext(t)
	done := make(chan *Call, outstanding)
	payloads := make([][]byte, total)
	bufs := make([][]byte, outstanding)
	delivered := make([]int, total)
	index := map[*Call]int{}
	slot := map[*Call]int{}
	next := 0
	start := func(s int) {
		payloads[next] = payloadFor(next)
		call := c.Go(ctx, methodEcho, payloads[next], bufs[s][:0], done)
		index[call] = next
		slot[call] = s
		next++
	}
	for s := range outstanding {
		bufs[s] = make([]byte, 64)
		if next < total {
			start(s)
		}
	}
	for completed := 0; completed < total; completed++ {
		var call *Call
		select {
		case call = <-done:
		case <-ctx.Done():
			t.Fatalf("only %d of %d calls completed", completed, total)
		}
		i, s := index[call], slot[call]
		delete(index, call)
		delete(slot, call)
		if call.Err != nil {
			t.Fatalf("call %d: %v", i, call.Err)
		}
		delivered[i]++
		if !bytes.Equal(call.Reply.Payload, payloads[i]) {
			t.Fatalf("call %d: reply %x, want %x", i, call.Reply.Payload, payloads[i])
		}
		call.Release()
		if next < total {
			start(s)
		}
	}
	for i, n := range delivered {
		if n != 1 {
			t.Fatalf("call %d delivered %d times", i, n)
		}
	}
	select {
	case call := <-done:
		t.Fatalf("extra delivery of %q", call.Method)
	default:
	}
	if st := c.Stats(); st.Replies < uint64(total) {
		t.Errorf("stats %+v: fewer replies than calls", st)
	}
}

func TestClientDeadline(t *testing.T) { onBothPaths(t, testClientDeadline) }

func testClientDeadline(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	c := dialTest(t, srv.addr.String(), WithRetransmission(5*time.Millisecond, 10*time.Millisecond, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Call(ctx, methodSilent, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call = %v, want DeadlineExceeded", err)
	}
	if _, ok := StatusOf(err); ok {
		t.Errorf("StatusOf(%v) claims a status", err)
	}
	// Without a deadline, cancellation ends the call too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel2() }()
	if _, err := c.Call(ctx2, methodSilent, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, want Canceled", err)
	}
	// An async call gets its context's error delivered.
	ctx3, cancel3 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel3()
	call := <-c.Go(ctx3, methodSilent, nil, nil, nil).Done
	if !errors.Is(call.Err, context.DeadlineExceeded) {
		t.Fatalf("Go = %v, want DeadlineExceeded", call.Err)
	}
	call.Release()
	// The client still works afterwards.
	if _, err := c.Call(testContext(t), methodEcho, []byte{8, 1}, nil); err != nil {
		t.Fatal(err)
	}
	if c.Stats().Retransmits == 0 {
		t.Error("no retransmissions of the unanswered calls")
	}
}

// TestClientRetransmit: the server drops the first two copies of every
// request; calls still complete and the server saw three copies of each
// request id.
func TestClientRetransmit(t *testing.T) { onBothPaths(t, testClientRetransmit) }

func testClientRetransmit(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{dropFirst: 2})
	c := dialTest(t, srv.addr.String(), WithRetransmission(2*time.Millisecond, 8*time.Millisecond, 0))
	ctx := testContext(t)
	for i := range 20 {
		p := payloadFor(i)
		reply, err := c.Call(ctx, methodEcho, p, nil)
		if err != nil || !bytes.Equal(reply.Payload, p) {
			t.Fatalf("call %d = %x, %v", i, reply.Payload, err)
		}
	}
	if st, err := c.Ping(ctx); err != nil || st != proto.PongServing {
		t.Fatalf("Ping = %v, %v", st, err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.seen) != 21 {
		t.Fatalf("server saw %d request ids, want 21", len(srv.seen))
	}
	for id, n := range srv.seen {
		// A slow machine may retransmit once more before the reply lands.
		if n < 3 {
			t.Errorf("request id %d seen %d times, want ≥ 3", id, n)
		}
	}
	if st := c.Stats(); st.Retransmits < 42 || st.Replies != 21 {
		t.Errorf("stats %+v, want ≥ 42 retransmits and 21 replies", st)
	}
}

// TestClientNoReply: after maxAttempts copies the call fails with
// ErrNoReply, and the server saw exactly that many copies.
func TestClientNoReply(t *testing.T) { onBothPaths(t, testClientNoReply) }

func testClientNoReply(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	c := dialTest(t, srv.addr.String(), WithRetransmission(time.Millisecond, 4*time.Millisecond, 3))
	_, err := c.Call(testContext(t), methodSilent, nil, nil)
	if !errors.Is(err, ErrNoReply) {
		t.Fatalf("Call = %v, want ErrNoReply", err)
	}
	// The copies were sent before the call failed; wait (bounded) for the
	// server to have read them all.
	for deadline := time.Now().Add(5 * time.Second); srv.totalCopies() < 3 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if n := srv.totalCopies(); n != 3 {
		t.Errorf("server saw %d copies, want 3", n)
	}
}

// TestClientDuplicateReplies: every reply arrives three times; each call
// completes once and the extra copies are counted, not delivered.
func TestClientDuplicateReplies(t *testing.T) { onBothPaths(t, testClientDuplicateReplies) }

func testClientDuplicateReplies(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{duplicates: 2})
	// A long timeout keeps retransmissions (which get three replies each
	// too) rare; the count below allows for them anyway.
	c := dialTest(t, srv.addr.String(), WithRetransmission(time.Second, time.Second, 0), WithMinRTO(time.Second))
	ctx := testContext(t)
	const calls = 50
	for i := range calls {
		p := payloadFor(i)
		reply, err := c.Call(ctx, methodEcho, p, nil)
		if err != nil || !bytes.Equal(reply.Payload, p) {
			t.Fatalf("call %d = %x, %v", i, reply.Payload, err)
		}
	}
	pipeline(t, c, 500, 16)
	// Every copy of a request the server read got three replies, one of
	// which (per call) completed the call.
	want := func() uint64 { return uint64(3*srv.totalCopies() - (calls + 500)) }
	for deadline := time.Now().Add(5 * time.Second); c.Stats().Duplicates < want() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if st := c.Stats(); st.Duplicates != want() || st.Replies != calls+500 || st.Duplicates < 2*(calls+500) {
		t.Errorf("stats %+v, want %d duplicates, %d replies", st, want(), calls+500)
	}
}

// methodBigLen is the payload methodBig answers with.
const methodBigLen = 5000

func TestClientReplyTooLarge(t *testing.T) { onBothPaths(t, testClientReplyTooLarge) }

func testClientReplyTooLarge(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	small := testEngine(t, WithReceiveBuffers(16, 4096))
	if _, err := dialOn(t, small, srv.addr.String()).Call(testContext(t), methodBig, nil, nil); !errors.Is(err, ErrReplyTooLarge) {
		t.Fatalf("Call with 4 KiB buffers = %v, want ErrReplyTooLarge", err)
	}
	c2 := dialOn(t, testEngine(t, WithReceiveBuffers(16, 16384)), srv.addr.String())
	reply, err := c2.Call(testContext(t), methodBig, nil, nil)
	if err != nil || len(reply.Payload) != methodBigLen {
		t.Fatalf("Call with 16 KiB buffers = %d bytes, %v", len(reply.Payload), err)
	}
}

// TestClientConnRefused: nobody listens; the ICMP port unreachable that
// the kernel answers ends the call at once with ECONNREFUSED, instead of
// retransmitting until the last copy, and names the endpoint.
func TestClientConnRefused(t *testing.T) { onBothPaths(t, testClientConnRefused) }

func testClientConnRefused(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	conn.Close()
	// A retransmission schedule of ~17 minutes: only the ICMP error can
	// end these calls within the test's context.
	c := dialTest(t, addr, WithRetransmission(time.Second, time.Minute, 20))
	for i := range 3 {
		_, err := c.Call(testContext(t), methodEcho, nil, nil)
		var ce *CallError
		if !errors.Is(err, unix.ECONNREFUSED) || !errors.As(err, &ce) {
			t.Fatalf("call %d: %v, want a CallError with ECONNREFUSED", i, err)
		}
		if ce.Endpoint.String() != addr || ce.Method != methodEcho || ce.Attempts != 1 {
			t.Fatalf("call %d: %+v", i, ce)
		}
	}
	if c.Stats().SocketErrs < 3 {
		t.Errorf("%d socket errors counted for 3 calls to a closed port", c.Stats().SocketErrs)
	}
}

// TestClientClose: Close fails calls in flight (sync and async) with
// ErrClientClosed, and leaves no goroutine and no descriptor behind.
func TestClientClose(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	loopsBefore := runningLoops(0)
	fdsBefore := openFds(t)

	e, err := NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	if n := runningLoops(loopsBefore + 1); n != loopsBefore+1 {
		t.Fatalf("%d loops running, want %d", n, loopsBefore+1)
	}
	c, err := Dial("udp", srv.addr.String(), WithEngine(e))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if _, err := c.Call(ctx, methodEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	const async = 32
	done := make(chan *Call, async)
	for range async {
		c.Go(ctx, methodSilent, nil, nil, done)
	}
	syncErrs := make(chan error, 4)
	for range cap(syncErrs) {
		go func() {
			_, err := c.Call(ctx, methodSilent, nil, nil)
			syncErrs <- err
		}()
	}
	// Close once the server saw every call, so they are truly in flight.
	for deadline := time.Now().Add(10 * time.Second); srv.totalCopies() < 1+async+cap(syncErrs) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range async {
		call := <-done
		if !errors.Is(call.Err, ErrClientClosed) {
			t.Errorf("async call: %v, want ErrClientClosed", call.Err)
		}
		call.Release()
	}
	for range cap(syncErrs) {
		if err := <-syncErrs; !errors.Is(err, ErrClientClosed) {
			t.Errorf("sync call: %v, want ErrClientClosed", err)
		}
	}
	if _, err := c.Call(ctx, methodEcho, nil, nil); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Call after Close: %v", err)
	}
	if call := <-c.Go(ctx, methodEcho, nil, nil, nil).Done; !errors.Is(call.Err, ErrClientClosed) {
		t.Errorf("Go after Close: %v", call.Err)
	}
	if _, err := c.Ping(ctx); !errors.Is(err, ErrClientClosed) {
		t.Errorf("Ping after Close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, ErrClientClosed) {
		t.Errorf("second Close: %v", err)
	}
	if n := runningLoops(loopsBefore + 1); n != loopsBefore+1 {
		t.Errorf("closing a Client stopped the engine's loop: %d running", n)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if n := runningLoops(loopsBefore); n != loopsBefore {
		t.Errorf("%d loops still running after the engine's Close, want %d", n, loopsBefore)
	}
	if leaked := newKernelFds(t, fdsBefore); len(leaked) > 0 {
		t.Errorf("descriptors left open after Close: %v", leaked)
	}
}

// TestClientCloseRace closes clients while callers are busy, to let the
// race detector see Close against enqueue, cancel and delivery.
func TestClientCloseRace(t *testing.T) {
	srv := startGWIRServer(t, serverConfig{})
	e := testEngine(t)
	for round := range 5 {
		c, err := Dial("udp", srv.addr.String(), WithEngine(e), WithRetransmission(time.Millisecond, 2*time.Millisecond, 0))
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for w := range cap(errs) {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for i := 0; ; i++ {
					method := methodEcho
					if (w+i)%3 == 0 {
						method = methodSilent
					}
					cctx, ccancel := context.WithTimeout(ctx, time.Duration(i%4)*time.Millisecond)
					_, err := c.Call(cctx, method, payloadFor(i), nil)
					ccancel()
					if errors.Is(err, ErrClientClosed) {
						errs <- nil
						return
					}
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						errs <- fmt.Errorf("round %d worker %d call %d: %w", round, w, i, err)
						return
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		for range cap(errs) {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
	if st := e.Stats(); st.Endpoints != 0 {
		t.Errorf("%d endpoints left after every Client closed", st.Endpoints)
	}
}

func TestDialErrors(t *testing.T) {
	e := testEngine(t)
	for _, tc := range []struct{ network, addr string }{
		{"sctp", "127.0.0.1:1"},
		{"tcp", "127.0.0.1"},
		{"udp", "127.0.0.1"},
		{"udp", "127.0.0.1:0"},
		{"udp6", "127.0.0.1:7000"},
		{"udp4", "[::1]:7000"},
	} {
		if c, err := Dial(tc.network, tc.addr, WithEngine(e)); err == nil {
			c.Close()
			t.Errorf("Dial(%q, %q) succeeded", tc.network, tc.addr)
		}
	}
	for _, opt := range []ClientOption{
		WithRetransmission(0, time.Second, 1),
		WithRetransmission(time.Second, time.Millisecond, 1),
		WithRetransmission(time.Millisecond, time.Second, -1),
		WithCaller(strings.Repeat("x", 256)),
		WithEngine(nil),
	} {
		if c, err := Dial("udp", "127.0.0.1:7000", WithEngine(e), opt); err == nil {
			c.Close()
			t.Error("Dial accepted a bad option")
		}
	}
	for _, opt := range []EngineOption{
		WithReceiveBuffers(100, 1000),
		WithReceiveBuffers(128, proto.MaxFrameLen+65),
		WithClientBusyPoll(-1),
		WithClientLoops(-1),
	} {
		if e, err := NewEngine(opt); err == nil {
			e.Close()
			t.Error("NewEngine accepted a bad option")
		}
	}
}

// TestClientIPv6 calls over ::1.
func TestClientIPv6(t *testing.T) { onBothPaths(t, testClientIPv6) }

func testClientIPv6(t *testing.T) {
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveGWIR(t, conn, serverConfig{})
	c := dialTest(t, srv.addr.String())
	p := payloadFor(6)
	reply, err := c.Call(testContext(t), methodEcho, p, nil)
	if err != nil || !bytes.Equal(reply.Payload, p) {
		t.Fatalf("Call over IPv6 = %x, %v", reply.Payload, err)
	}
}

// TestClientNamespaces runs the server and the client in two namespaces
// joined by a veth pair.
func TestClientNamespaces(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	var conn *net.UDPConn
	if err := link.A.Host.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: link.A.Addr4.AsSlice()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := serveGWIR(t, conn, serverConfig{dropFirst: 1})
	var c *Client
	if err := link.B.Host.Do(func() error {
		e, err := NewEngine()
		if err != nil {
			return err
		}
		t.Cleanup(func() { e.Close() })
		c, err = Dial("udp4", srv.addr.String(), WithEngine(e), WithRetransmission(2*time.Millisecond, 20*time.Millisecond, 0))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The engine's socket is unconnected (bound to the wildcard address);
	// that the calls below reach the server's namespace-only address at all
	// shows it lives in the client's namespace.
	if c.LocalAddr().Port() == 0 {
		t.Errorf("client socket %v has no port", c.LocalAddr())
	}
	ctx := testContext(t)
	if st, err := c.Ping(ctx); err != nil || st != proto.PongServing {
		t.Fatalf("Ping = %v, %v", st, err)
	}
	p := payloadFor(7)
	reply, err := c.Call(ctx, methodEcho, p, nil)
	if err != nil || !bytes.Equal(reply.Payload, p) {
		t.Fatalf("Call = %x, %v", reply.Payload, err)
	}
	pipeline(t, c, 2000, 64)
	if c.Stats().Retransmits < 2002 {
		t.Errorf("stats %+v: the server dropped every first copy, so every call needed a retransmit", c.Stats())
	}
}

// TestClientCallAllocs pins the steady-state allocations of a round trip.
func TestClientCallAllocs(t *testing.T) { onBothPaths(t, testClientCallAllocs) }

func testClientCallAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts do not hold under the race detector")
	}
	srv := startGWIRServer(t, serverConfig{})
	c := dialTest(t, srv.addr.String())
	ctx := context.Background()
	payload := payloadFor(1)
	buf := make([]byte, 0, 64)
	call := func() {
		if _, err := c.Call(ctx, methodEcho, payload, buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		call()
	}
	if n := testing.AllocsPerRun(1000, call); n > 0 {
		t.Errorf("Call allocates %.2f times per round trip, want 0", n)
	}
	done := make(chan *Call, 1)
	goCall := func() {
		cl := <-c.Go(ctx, methodEcho, payload, buf, done).Done
		if cl.Err != nil {
			t.Fatal(cl.Err)
		}
		cl.Release()
	}
	if n := testing.AllocsPerRun(1000, goCall); n > 0 {
		t.Errorf("Go allocates %.2f times per round trip, want 0", n)
	}
}

// TestLastSocketErrClears: a reply from an endpoint clears the socket
// error it reported before, so that a later failure of a call to it
// does not carry a stale LastSocketErr.
func TestLastSocketErrClears(t *testing.T) { onBothPaths(t, testLastSocketErrClears) }

func testLastSocketErrClears(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ua := conn.LocalAddr().(*net.UDPAddr)
	conn.Close()
	c := dialTest(t, ua.String(), WithRetransmission(time.Second, time.Minute, 20))
	ctx := testContext(t)
	if _, err := c.Call(ctx, methodEcho, nil, nil); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("call to a closed port: %v, want ECONNREFUSED", err)
	}
	// Now someone serves on that port.
	conn, err = net.ListenUDP("udp4", ua)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	serveGWIR(t, conn, serverConfig{})
	if _, err := c.Call(ctx, methodEcho, nil, nil); err != nil {
		t.Fatalf("call once the server is up: %v", err)
	}
	// A call that times out: no socket error happened since the reply.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.Call(short, methodSilent, nil, nil)
	var ce *CallError
	if !errors.As(err, &ce) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("silent call: %v, want a CallError with context.DeadlineExceeded", err)
	}
	if ce.LastSocketErr != nil {
		t.Errorf("silent call after a reply: LastSocketErr %v, want none (stale, from before the reply): %v", ce.LastSocketErr, err)
	}
}

// TestCallErrorText: a CallError counts its copies in the right number.
func TestCallErrorText(t *testing.T) { onBothPaths(t, testCallErrorText) }

func testCallErrorText(t *testing.T) {
	for _, tc := range []struct {
		attempts int
		want     string
	}{
		{0, "runtime: call m to 127.0.0.1:9: no reply"},
		{1, "runtime: call m to 127.0.0.1:9 (1 attempt): no reply"},
		{3, "runtime: call m to 127.0.0.1:9 (3 attempts): no reply"},
	} {
		e := &CallError{Endpoint: netip.MustParseAddrPort("127.0.0.1:9"), Method: "m", Attempts: tc.attempts, Err: ErrNoReply}
		if got := e.Error(); got != tc.want {
			t.Errorf("%d attempts: %q, want %q", tc.attempts, got, tc.want)
		}
	}
}
