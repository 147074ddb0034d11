package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

// loopGoroutine is how an event loop's goroutine shows in a stack dump.
const loopGoroutine = "engine.(*Loop).run("

const (
	panicMethod    = "test.T/Panic"
	blockingMethod = "test.T/Blocking"
	bigMethod      = "test.T/Big"
	peerMethod     = "test.T/Peer"
)

// testServer listens with opts, registers the demo service and the test
// methods, starts, and shuts down (checking for leftovers) at cleanup.
func testServer(t *testing.T, addr string, opts ...runtime.Option) (*runtime.Server, *blockGate) {
	t.Helper()
	return testServerIn(t, func(f func() error) error { return f() }, addr, opts...)
}

// testServerIn is testServer with Listen run through do (e.g. inside a
// namespace with topo.Host.Do).
func testServerIn(t *testing.T, do func(func() error) error, addr string, opts ...runtime.Option) (*runtime.Server, *blockGate) {
	t.Helper()
	return startTestServer(t, do, addr, true, opts...)
}

// startTestServer is testServerIn; checkLeft says whether its cleanup
// checks that no loop or worker goroutine is left, which a test running
// several servers checks once, after the last (expectNoLoopsLeft).
func startTestServer(t *testing.T, do func(func() error) error, addr string, checkLeft bool, opts ...runtime.Option) (*runtime.Server, *blockGate) {
	t.Helper()
	opts = append([]runtime.Option{runtime.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)
	var srv *runtime.Server
	err := do(func() (err error) {
		srv, err = runtime.Listen("udp", addr, opts...)
		return err
	})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	gate := &blockGate{release: make(chan struct{})}
	echo.Register(srv)
	srv.Handle(panicMethod, func(*runtime.Request, *runtime.Response) { panic("boom") })
	srv.Handle(bigMethod, func(req *runtime.Request, resp *runtime.Response) {
		chunk := make([]byte, 1000)
		for {
			if _, err := resp.Write(chunk); err != nil {
				return
			}
		}
	})
	srv.HandleBlocking(blockingMethod, gate.handle)
	srv.Handle(peerMethod, func(req *runtime.Request, resp *runtime.Response) {
		resp.AppendString(1, req.Peer().String())
	})
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		gate.open()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if checkLeft {
			noLoopsLeft(t)
		}
	})
	return srv, gate
}

// noLoopsLeft fails t if loop or worker goroutines outlive Shutdown.
func noLoopsLeft(t *testing.T) {
	t.Helper()
	for i := 0; i < 200 && leak.Goroutines(loopGoroutine, "engine.(*Pool).work") > 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if n := leak.Goroutines(loopGoroutine, "engine.(*Pool).work"); n > 0 {
		t.Errorf("%d loop or worker goroutines left after Shutdown", n)
	}
}

// expectNoLoopsLeft registers the goroutine check of a test that runs
// several servers: call it before starting them, so that it runs after
// their cleanups have shut them all down.
func expectNoLoopsLeft(t *testing.T) {
	t.Cleanup(func() { noLoopsLeft(t) })
}

// blockGate is a blocking handler that echoes once the gate opens. Its
// state is behind a mutex because handlers read it from worker goroutines
// while tests open and re-close it.
type blockGate struct {
	mu      sync.Mutex
	release chan struct{}
	opened  bool
	entered atomic.Int64
}

func (g *blockGate) handle(req *runtime.Request, resp *runtime.Response) {
	g.entered.Add(1)
	g.mu.Lock()
	release := g.release
	g.mu.Unlock()
	<-release
	resp.Write(req.Payload())
}

func (g *blockGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		g.opened = true
		close(g.release)
	}
}

// reset closes the gate again for a test that needs it held.
func (g *blockGate) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.release, g.opened = make(chan struct{}), false
	g.entered.Store(0)
}

// kernelClient is a plain kernel UDP socket speaking GWIR, the independent
// peer of these tests.
type kernelClient struct {
	t    *testing.T
	conn *net.UDPConn
	buf  []byte
	rto  time.Duration // how long call waits before resending
}

func dialKernel(t *testing.T, to netip.AddrPort) *kernelClient {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &kernelClient{t: t, conn: conn, buf: make([]byte, 65536), rto: 500 * time.Millisecond}
}

func (c *kernelClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next frame, or nil after timeout.
func (c *kernelClient) recv(timeout time.Duration) proto.Frame {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.conn.Read(c.buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		c.t.Fatal(err)
	}
	f, err := proto.Parse(append([]byte(nil), c.buf[:n]...))
	if err != nil {
		c.t.Fatalf("reply does not parse: %v (% x)", err, c.buf[:n])
	}
	return f
}

// call sends one request and waits (retransmitting, as a real client
// would) for the reply with its id.
func (c *kernelClient) call(id uint64, method string, payload []byte) proto.Frame {
	c.t.Helper()
	req, err := proto.EncodeRequest(make([]byte, proto.HeaderLen+len(payload)), id, proto.MethodID(method), 0, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.callFrame(req)
}

// callFrame is call for a request already encoded.
func (c *kernelClient) callFrame(req proto.Frame) proto.Frame {
	c.t.Helper()
	id, method := req.RequestID(), req.MethodID()
	for attempt := 0; attempt < 20; attempt++ {
		c.send(req)
		deadline := time.Now().Add(c.rto)
		for time.Now().Before(deadline) {
			f := c.recv(time.Until(deadline))
			if f == nil {
				break
			}
			if f.RequestID() == id {
				return f
			}
		}
	}
	c.t.Fatalf("no reply to request %d (method %#x)", id, method)
	return nil
}

func sumPayload(values ...uint64) []byte {
	var b []byte
	for _, v := range values {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, v)
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType) // ignored by Sum
	b = protowire.AppendString(b, "not summed")
	return b
}

func firstVarint(t *testing.T, f proto.Frame) uint64 {
	t.Helper()
	it := f.Fields()
	for it.Next() {
		if fl := it.Field(); fl.Num() == 1 {
			return fl.Uint64()
		}
	}
	t.Fatalf("no field 1 in % x (%v)", f.Payload(), it.Err())
	return 0
}

// exerciseService runs the behaviour every backend must share against srv
// through c.
func exerciseService(t *testing.T, srv *runtime.Server, c *kernelClient, gate *blockGate) {
	t.Run("echo", func(t *testing.T) {
		payload := []byte("\x0a\x05hello\x10\x96\x01")
		f := c.call(1, echo.EchoMethod, payload)
		if f.Kind() != proto.KindResponse || f.Status() != proto.StatusOK || !bytes.Equal(f.Payload(), payload) {
			t.Fatalf("echo reply: kind %v status %v payload % x", f.Kind(), f.Status(), f.Payload())
		}
		if f.MethodID() != proto.MethodID(echo.EchoMethod) {
			t.Fatalf("method id %#x not echoed", f.MethodID())
		}
	})
	t.Run("sum", func(t *testing.T) {
		f := c.call(2, echo.SumMethod, sumPayload(1, 2, 3, 1<<40))
		if got := firstVarint(t, f); got != 6+1<<40 {
			t.Fatalf("sum = %d", got)
		}
	})
	t.Run("peer", func(t *testing.T) {
		f := c.call(11, peerMethod, nil)
		it := f.Fields()
		if !it.Next() || string(it.Field().Bytes()) != c.conn.LocalAddr().String() {
			t.Fatalf("handler saw peer % q, the client is %s", f.Payload(), c.conn.LocalAddr())
		}
	})
	t.Run("ping", func(t *testing.T) {
		ping, _ := proto.EncodePing(make([]byte, proto.HeaderLen), 77)
		c.send(ping)
		f := c.recv(5 * time.Second)
		if f == nil || f.Kind() != proto.KindPong || f.RequestID() != 77 || f.Status() != proto.PongServing {
			t.Fatalf("PONG = %v", f)
		}
	})
	t.Run("unknown method", func(t *testing.T) {
		f := c.call(3, "no.Such/Method", nil)
		if f.Status() != proto.StatusUnknownMethod {
			t.Fatalf("status %v", f.Status())
		}
	})
	t.Run("bad frame answered", func(t *testing.T) {
		req, _ := proto.EncodeRequest(make([]byte, 64), 4, proto.MethodID(echo.EchoMethod), 0, []byte("abc"))
		bad := append([]byte(nil), req...)
		bad[23] |= 0x80 // a reserved flag
		c.send(bad)
		f := c.recv(5 * time.Second)
		if f == nil || f.Status() != proto.StatusBadFrame || f.RequestID() != 4 || len(f) > len(bad) {
			t.Fatalf("BAD_FRAME reply = % x", f)
		}
	})
	t.Run("handler panic", func(t *testing.T) {
		f := c.call(5, panicMethod, nil)
		if f.Status() != proto.StatusInternal {
			t.Fatalf("status %v", f.Status())
		}
		if got := firstVarint(t, c.call(6, echo.SumMethod, sumPayload(40, 2))); got != 42 {
			t.Fatalf("after a panic, sum = %d", got)
		}
	})
	t.Run("too large", func(t *testing.T) {
		f := c.call(7, bigMethod, nil)
		if f.Status() != proto.StatusTooLarge {
			t.Fatalf("status %v, %d payload bytes", f.Status(), len(f.Payload()))
		}
	})
	t.Run("blocking handler", func(t *testing.T) {
		gate.open()
		f := c.call(8, blockingMethod, []byte("\x08\x01"))
		if f.Status() != proto.StatusOK || !bytes.Equal(f.Payload(), []byte("\x08\x01")) {
			t.Fatalf("blocking reply status %v payload % x", f.Status(), f.Payload())
		}
	})
	t.Run("garbage barrage", func(t *testing.T) {
		rng := rand.New(rand.NewSource(1))
		valid, _ := proto.EncodeRequest(make([]byte, 64), 9, proto.MethodID(echo.EchoMethod), 0, []byte("xyz"))
		for i := 0; i < 2000; i++ {
			var b []byte
			switch i % 4 {
			case 0: // random bytes
				b = make([]byte, rng.Intn(200))
				rng.Read(b)
			case 1: // truncated valid frame
				b = valid[:rng.Intn(len(valid))]
			case 2: // lying length
				b = append([]byte(nil), valid...)
				b[5], b[6] = byte(rng.Intn(256)), byte(rng.Intn(256))
			case 3: // right magic and version, random rest
				b = make([]byte, 24+rng.Intn(40))
				rng.Read(b)
				copy(b, valid[:5])
			}
			c.send(b)
		}
		// Whatever was answered, the service still answers correctly.
		if got := firstVarint(t, c.call(10, echo.SumMethod, sumPayload(5, 5))); got != 10 {
			t.Fatalf("after garbage, sum = %d", got)
		}
		st := srv.Stats().Total
		if st.DroppedTotal() == 0 || st.BadFrame == 0 {
			t.Fatalf("garbage not counted: dropped %v bad %d", st.Dropped, st.BadFrame)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		const calls, window = 10000, 64
		seen := make([]int, calls)
		next, answered := 0, 0
		payloadOf := func(i int) []byte {
			return protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(i))
		}
		send := func(i int) {
			req, _ := proto.EncodeRequest(make([]byte, 64), uint64(1000+i), proto.MethodID(echo.EchoMethod), 0, payloadOf(i))
			c.send(req)
		}
		for ; next < window; next++ {
			send(next)
		}
		retries := 0
		for answered < calls {
			f := c.recv(time.Second)
			if f == nil {
				// A datagram lost somewhere: resend every unanswered one
				// in the window (bounded), as a client would.
				if retries++; retries > 20 {
					t.Fatalf("stalled at %d answered", answered)
				}
				for i := 0; i < next; i++ {
					if seen[i] == 0 {
						send(i)
					}
				}
				continue
			}
			i := int(f.RequestID()) - 1000
			if i < 0 || i >= calls {
				// A late duplicate answering an earlier subtest's
				// retransmitted call: a client ignores unknown ids.
				continue
			}
			if !bytes.Equal(f.Payload(), payloadOf(i)) {
				t.Fatalf("reply %d payload % x", f.RequestID(), f.Payload())
			}
			seen[i]++
			if seen[i] == 1 {
				answered++
				if next < calls {
					send(next)
					next++
				}
			}
		}
		t.Logf("%d calls, %d retransmission rounds", calls, retries)
		if retries == 0 {
			for i, n := range seen {
				if n != 1 {
					t.Fatalf("call %d answered %d times", i, n)
				}
			}
		}
	})
}

func TestUringBackendLoopback(t *testing.T) {
	srv, gate := testServer(t, "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring), runtime.WithQueues(0, 1))
	if srv.Backend() != runtime.BackendUring || srv.BackendReason() == "" {
		t.Fatalf("backend %v (%q)", srv.Backend(), srv.BackendReason())
	}
	c := dialKernel(t, srv.Addr())
	exerciseService(t, srv, c, gate)
	if n := leak.Goroutines(loopGoroutine); n < 2 {
		t.Fatalf("%d loop goroutines visible while serving on 2 queues", n)
	}
	st := srv.Stats()
	if len(st.Loops) != 2 || st.Total.RX == 0 || st.Total.TX == 0 || st.Total.Latency.Count() == 0 || st.Total.Panics != 1 {
		t.Fatalf("stats: %+v", st.Total)
	}
}

func TestAutoOnLoopbackFallsBackToUring(t *testing.T) {
	srv, _ := testServer(t, "127.0.0.1:0")
	if srv.Backend() != runtime.BackendUring || srv.BackendReason() == "" {
		t.Fatalf("backend %v (%q)", srv.Backend(), srv.BackendReason())
	}
}

func TestForcedXSKWithoutInterfaceFails(t *testing.T) {
	_, err := runtime.Listen("udp", "127.0.0.1:7000", runtime.WithBackend(runtime.BackendXSK))
	if err == nil {
		t.Fatal("forced XSK on loopback succeeded")
	}
	t.Log(err)
}
