package runtime_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	extInfoMethod    = "test.Ext/Info"
	extLimitedMethod = "test.Ext/Limited"
)

// extRequest encodes a request with an extension block.
func extRequest(t *testing.T, id uint64, method string, fill func(x *proto.ExtBuilder), payload []byte) proto.Frame {
	t.Helper()
	var x proto.ExtBuilder
	fill(&x)
	f, err := proto.EncodeRequestExt(make([]byte, 1024), id, proto.MethodID(method), 0, &x, payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// registerExtMethods adds handlers that report what they see of the
// extension block.
func registerExtMethods(srv *zr.Server) {
	srv.Handle(extInfoMethod, func(req *zr.Request, resp *zr.Response) {
		resp.AppendBytes(1, req.Caller())
		resp.AppendVarint(2, uint64(req.Attempt()))
		if d, ok := req.Deadline(); ok {
			resp.AppendVarint(3, uint64(d.Sub(req.Arrival())/time.Microsecond))
		}
		if tc, ok := req.Trace(); ok {
			resp.AppendBytes(4, tc.TraceID[:])
		}
		if v, ok := req.Ext(proto.ExtApp + 1); ok {
			resp.AppendBytes(5, v)
		}
		resp.AppendString(6, req.Method())
	})
	srv.Handle(extLimitedMethod, func(req *zr.Request, resp *zr.Response) {
		resp.Error(proto.StatusRateLimited, "slow down")
		resp.SetRetryAfter(250 * time.Millisecond)
	})
}

func fieldsOf(t *testing.T, f proto.Frame) map[protowire.Number][]byte {
	t.Helper()
	out := map[protowire.Number][]byte{}
	it := f.Fields()
	for it.Next() {
		fl := it.Field()
		if fl.Type() == protowire.BytesType {
			out[fl.Num()] = fl.Bytes()
		} else {
			out[fl.Num()] = protowire.AppendVarint(nil, fl.Uint64())
		}
	}
	if it.Err() != nil {
		t.Fatalf("reply payload: %v", it.Err())
	}
	return out
}

func varintOf(t *testing.T, b []byte) uint64 {
	t.Helper()
	v, n := protowire.ConsumeVarint(b)
	if n <= 0 {
		t.Fatalf("not a varint: % x", b)
	}
	return v
}

// exerciseExt is what every backend must do with the extension block.
func exerciseExt(t *testing.T, srv *zr.Server, c *kernelClient) {
	t.Run("handler sees the block, reply carries SERVICE_TIME", func(t *testing.T) {
		tc := proto.TraceContext{TraceID: [16]byte{1, 2, 3}, SpanID: [8]byte{9}, Flags: proto.TraceFlagSampled}
		req := extRequest(t, 101, extInfoMethod, func(x *proto.ExtBuilder) {
			x.SetDeadline(2 * time.Second)
			x.SetCaller([]byte("svc-a"))
			x.SetAttempt(2)
			x.SetTrace(tc)
			x.AddApp(proto.ExtApp+1, []byte("app"))
		}, nil)
		f := c.callFrame(req)
		if f.Status() != proto.StatusOK || !f.HasExt() {
			t.Fatalf("status %v, ext %v", f.Status(), f.HasExt())
		}
		if _, ok := f.ServiceTime(); !ok {
			t.Fatal("reply without SERVICE_TIME")
		}
		got := fieldsOf(t, f)
		if string(got[1]) != "svc-a" || varintOf(t, got[2]) != 2 || string(got[4]) != string(tc.TraceID[:]) ||
			string(got[5]) != "app" || string(got[6]) != extInfoMethod {
			t.Fatalf("handler saw %q", got)
		}
		if budget := varintOf(t, got[3]); budget == 0 || budget > 2_000_000 {
			t.Fatalf("deadline %d µs after arrival, want (0, 2 s]", budget)
		}
	})
	t.Run("a caller without EXT gets a reply without it", func(t *testing.T) {
		f := c.call(102, extInfoMethod, nil)
		if f.Status() != proto.StatusOK || f.HasExt() {
			t.Fatalf("status %v, ext %v", f.Status(), f.HasExt())
		}
		if _, ok := fieldsOf(t, f)[3]; ok {
			t.Fatal("a deadline without a DEADLINE tag")
		}
	})
	t.Run("expired on arrival", func(t *testing.T) {
		before := srv.Stats().Total.Expired
		f := c.callFrame(extRequest(t, 103, extInfoMethod, func(x *proto.ExtBuilder) { x.SetDeadline(0) }, nil))
		if f.Status() != proto.StatusDeadlineExceeded {
			t.Fatalf("status %v, want DEADLINE_EXCEEDED", f.Status())
		}
		if got := srv.Stats().Total.Expired - before; got != 1 {
			t.Fatalf("Expired grew by %d", got)
		}
	})
	t.Run("RETRY_AFTER", func(t *testing.T) {
		f := c.callFrame(extRequest(t, 104, extLimitedMethod, func(x *proto.ExtBuilder) { x.SetAttempt(0) }, nil))
		if ra, ok := f.RetryAfter(); f.Status() != proto.StatusRateLimited || !ok || ra != 250*time.Millisecond {
			t.Fatalf("status %v retry-after %v %v", f.Status(), ra, ok)
		}
	})
	t.Run("per-method counters", func(t *testing.T) {
		for _, m := range srv.Stats().Methods {
			if m.Method != extInfoMethod {
				continue
			}
			if m.Requests < 3 || m.Statuses[proto.StatusOK] < 2 || m.Statuses[proto.StatusDeadlineExceeded] < 1 || m.Latency.Count() < 2 {
				t.Fatalf("%s: %+v", m.Method, m)
			}
			return
		}
		t.Fatalf("no stats for %s", extInfoMethod)
	})
}

func TestExtUring(t *testing.T) {
	srv, _ := testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring))
	registerExtMethods(srv)
	exerciseExt(t, srv, dialKernel(t, srv.Addr()))
}

func TestExtXSK(t *testing.T) {
	forEachPeer(t, func(t *testing.T, offload bool) {
		link, srv, _ := xskPair(t, offload, 1)
		registerExtMethods(srv)
		exerciseExt(t, srv, kernelClientIn(t, link.B.Host, srv.Addr()))
		if st := srv.Stats(); st.Total.Served["xsk"] == 0 {
			t.Fatalf("nothing served over AF_XDP: %v", st.Total.Served)
		}
	})
}

// A blocking request whose deadline passes while it waits for a worker
// is answered DEADLINE_EXCEEDED without running its handler.
func TestBlockingDeadlinePassesInQueue(t *testing.T) {
	srv, gate := testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithWorkers(1, 4))
	c := dialKernel(t, srv.Addr())
	first, _ := proto.EncodeRequest(make([]byte, 64), 1, proto.MethodID(blockingMethod), 0, []byte("\x08\x01"))
	c.send(first) // takes the only worker until the gate opens
	for i := 0; i < 2000 && gate.entered.Load() == 0; i++ {
		time.Sleep(time.Millisecond)
	}
	if gate.entered.Load() != 1 {
		t.Fatal("the first blocking request never reached its handler")
	}
	second := extRequest(t, 2, blockingMethod, func(x *proto.ExtBuilder) { x.SetDeadline(time.Millisecond) }, []byte("\x08\x02"))
	c.send(second)
	for i := 0; i < 2000 && srv.Stats().Total.Blocking < 2; i++ {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // past the second request's 1 ms budget
	gate.open()
	var gotSecond proto.Frame
	for i := 0; i < 4 && gotSecond == nil; i++ {
		if f := c.recv(2 * time.Second); f != nil && f.RequestID() == 2 {
			gotSecond = f
		}
	}
	if gotSecond == nil || gotSecond.Status() != proto.StatusDeadlineExceeded {
		t.Fatalf("second reply %v", gotSecond)
	}
	if n := gate.entered.Load(); n != 1 {
		t.Fatalf("the handler ran %d times; the expired request must not run it", n)
	}
	if st := srv.Stats(); st.Total.Expired != 1 {
		t.Fatalf("Expired = %d", st.Total.Expired)
	}
}

// Admission middleware runs on the loop before the handler (and before a
// blocking request takes a worker); handler middleware wraps the handler
// where it runs, first outermost.
func TestMiddlewareOrderAndAdmission(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(s string) {
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
	}
	named := func(name string) zr.Middleware {
		return func(m zr.MethodInfo, next zr.Handler) zr.Handler {
			return zr.HandlerFunc(func(req *zr.Request, resp *zr.Response) {
				record(name + ":" + m.Name)
				next.ServeGWIR(req, resp)
			})
		}
	}
	refuse := func(m zr.MethodInfo, next zr.Handler) zr.Handler {
		if m.Name != blockingMethod {
			return next
		}
		return zr.HandlerFunc(func(req *zr.Request, resp *zr.Response) {
			record("refused")
			resp.Error(proto.StatusRateLimited, "no")
			resp.SetRetryAfter(time.Second)
		})
	}
	srv, gate := testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring),
		zr.WithAdmission(named("admit"), refuse), zr.WithMiddleware(named("outer"), named("inner")))
	gate.open()
	c := dialKernel(t, srv.Addr())
	if f := c.call(1, "zerohop.Echo/Echo", []byte("\x08\x01")); f.Status() != proto.StatusOK {
		t.Fatalf("echo: %v", f.Status())
	}
	f := c.callFrame(extRequest(t, 2, blockingMethod, func(x *proto.ExtBuilder) { x.SetAttempt(0) }, nil))
	if ra, _ := f.RetryAfter(); f.Status() != proto.StatusRateLimited || ra != time.Second {
		t.Fatalf("refused blocking call: %v, retry after %v", f.Status(), ra)
	}
	if n := gate.entered.Load(); n != 0 {
		t.Fatalf("a refused blocking request reached its handler %d times", n)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"admit:zerohop.Echo/Echo", "outer:zerohop.Echo/Echo", "inner:zerohop.Echo/Echo", "admit:" + blockingMethod, "refused"}
	if len(seen) != len(want) {
		t.Fatalf("order %q, want %q", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("order %q, want %q", seen, want)
		}
	}
}

// Serve returns ErrServerClosed when Shutdown came from elsewhere, and
// nil when its own context ended.
func TestServeResults(t *testing.T) {
	srv, err := zr.Listen("udp", "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	waitServing(t, srv)
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, zr.ErrServerClosed) {
		t.Fatalf("Serve after a Shutdown from elsewhere: %v", err)
	}

	srv2, err := zr.Listen("udp", "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithLogger(discardLogger()),
		zr.WithShutdownGrace(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- srv2.Serve(ctx) }()
	waitServing(t, srv2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after its context ended: %v", err)
	}
}

// waitServing pings srv until it answers.
func waitServing(t *testing.T, srv *zr.Server) {
	t.Helper()
	c := dialKernel(t, srv.Addr())
	ping, _ := proto.EncodePing(make([]byte, proto.HeaderLen), 77)
	for i := 0; i < 200; i++ {
		c.send(ping)
		if f := c.recv(50 * time.Millisecond); f != nil && f.Kind() == proto.KindPong {
			return
		}
	}
	t.Fatal("server never answered a PING")
}

// Jobs still queued when the drain deadline passes never run: Shutdown
// returns, and they are counted as abandoned.
func TestShutdownAbandonsQueuedJobs(t *testing.T) {
	srv, err := zr.Listen("udp", "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithLogger(discardLogger()),
		zr.WithWorkers(1, 4))
	if err != nil {
		t.Fatal(err)
	}
	gate := &blockGate{release: make(chan struct{})}
	srv.HandleBlocking(blockingMethod, gate.handle)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dialKernel(t, srv.Addr())
	for id := uint64(1); id <= 2; id++ {
		f, _ := proto.EncodeRequest(make([]byte, 64), id, proto.MethodID(blockingMethod), 0, nil)
		c.send(f)
	}
	for i := 0; i < 2000 && (gate.entered.Load() == 0 || srv.Stats().Total.Blocking < 2); i++ {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
		gate.open()
		t.Fatalf("Shutdown with a stuck handler: %v", err)
	}
	gate.open() // the stuck handler returns; its worker then meets the queued job
	for i := 0; i < 2000 && srv.Stats().Abandoned == 0; i++ {
		time.Sleep(time.Millisecond)
	}
	if st := srv.Stats(); st.Abandoned != 1 {
		t.Fatalf("Abandoned = %d", st.Abandoned)
	}
	if n := gate.entered.Load(); n != 1 {
		t.Fatalf("%d handlers ran; the queued one must not start after the drain deadline", n)
	}
}

// With WithPoisonedBuffers, a handler that keeps its payload past its
// return sees poison, not a stale request.
func TestPoisonedBuffers(t *testing.T) {
	var kept []byte
	var mu sync.Mutex
	srv, err := zr.Listen("udp", "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithLogger(discardLogger()), zr.WithPoisonedBuffers())
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("test.T/Keep", func(req *zr.Request, resp *zr.Response) {
		mu.Lock()
		kept = req.Payload() // the bug this option exposes
		mu.Unlock()
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dialKernel(t, srv.Addr())
	c.call(1, "test.T/Keep", []byte("\x0a\x04keep"))
	poisoned := func(when string) {
		mu.Lock()
		defer mu.Unlock()
		if len(kept) != 6 {
			t.Fatalf("kept %d bytes", len(kept))
		}
		for _, b := range kept {
			if b != 0xDB {
				t.Fatalf("%s: kept payload % x, want poison", when, kept)
			}
		}
	}
	poisoned("after the handler")
	// Without the option the buffer's memory is unmapped at Shutdown, and
	// this read would fault.
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	poisoned("after Shutdown")
}
