package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

// engineIn starts a client engine in h's namespace (nil h: this one),
// closed at cleanup: the engine's sockets live where it was made.
func engineIn(t testing.TB, h *topo.Host, opts ...zr.EngineOption) *zr.Engine {
	t.Helper()
	var e *zr.Engine
	start := func() (err error) {
		e, err = zr.NewEngine(opts...)
		return err
	}
	var err error
	if h != nil {
		err = h.Do(start)
	} else {
		err = start()
	}
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// clientIn dials srv from h's namespace (nil h: this one), on an engine of
// its own.
func clientIn(t *testing.T, h *topo.Host, srv *zr.Server, opts ...zr.ClientOption) *zr.Client {
	t.Helper()
	var c *zr.Client
	e := engineIn(t, h)
	dial := func() (err error) {
		c, err = zr.Dial("udp", srv.Addr().String(), append([]zr.ClientOption{zr.WithEngine(e)}, opts...)...)
		return err
	}
	var err error
	if h != nil {
		err = h.Do(dial)
	} else {
		err = dial()
	}
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exerciseWithClient is the zerohop client's view of a backend.
func exerciseWithClient(t *testing.T, srv *zr.Server, c *zr.Client, gate *blockGate) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t.Run("echo and sum", func(t *testing.T) {
		r, err := c.Call(ctx, echo.EchoMethod, []byte("\x0a\x03abc"), nil)
		if err != nil || !bytes.Equal(r.Payload, []byte("\x0a\x03abc")) {
			t.Fatalf("echo: %v % x", err, r.Payload)
		}
		r, err = c.Call(ctx, echo.SumMethod, sumPayload(20, 22), nil)
		if err != nil {
			t.Fatal(err)
		}
		if v, n := protowire.ConsumeVarint(r.Payload[1:]); n < 0 || v != 42 || r.Payload[0] != 0x08 {
			t.Fatalf("sum reply % x", r.Payload)
		}
	})
	t.Run("statuses are typed errors", func(t *testing.T) {
		_, err := c.Call(ctx, "no.Such/Method", nil, nil)
		var se *zr.StatusError
		if !errors.As(err, &se) || se.Status != proto.StatusUnknownMethod {
			t.Fatalf("unknown method: %v", err)
		}
		_, err = c.Call(ctx, panicMethod, nil, nil)
		if !errors.As(err, &se) || se.Status != proto.StatusInternal || se.Message == "" {
			t.Fatalf("panic: %v", err)
		}
	})
	t.Run("ping", func(t *testing.T) {
		if st, err := c.Ping(ctx); err != nil || st != proto.PongServing {
			t.Fatalf("ping: %v %v", st, err)
		}
	})
	t.Run("10000 pipelined calls", func(t *testing.T) {
		const calls, window = 10000, 64
		done := make(chan *zr.Call, window)
		want := map[*zr.Call]uint64{}
		bufs := make([][]byte, 0, calls)
		started, finished := 0, 0
		start := func() {
			p := protowire.AppendVarint([]byte{0x08}, uint64(started))
			buf := make([]byte, 0, 16)
			bufs = append(bufs, buf)
			call := c.Go(ctx, echo.EchoMethod, p, buf, done)
			want[call] = uint64(started)
			started++
		}
		for started < window {
			start()
		}
		for finished < calls {
			call := <-done
			if call.Err != nil {
				t.Fatalf("call %d: %v", want[call], call.Err)
			}
			if v, n := protowire.ConsumeVarint(call.Reply.Payload[1:]); n < 0 || v != want[call] {
				t.Fatalf("call %d got % x", want[call], call.Reply.Payload)
			}
			delete(want, call)
			call.Release()
			finished++
			if started < calls {
				start()
			}
		}
		if len(want) != 0 {
			t.Fatalf("%d calls never completed", len(want))
		}
	})
	t.Run("blocking", func(t *testing.T) {
		gate.open()
		if r, err := c.Call(ctx, blockingMethod, []byte("\x08\x05"), nil); err != nil || !bytes.Equal(r.Payload, []byte("\x08\x05")) {
			t.Fatalf("blocking: %v % x", err, r.Payload)
		}
	})
}

func TestUringBackendWithClient(t *testing.T) {
	srv, gate := testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithQueues(0, 1))
	exerciseWithClient(t, srv, clientIn(t, nil, srv), gate)
}

func TestXSKBackendWithClient(t *testing.T) {
	forEachPeer(t, func(t *testing.T, offload bool) {
		link, srv, gate := xskPair(t, offload, 1)
		exerciseWithClient(t, srv, clientIn(t, link.B.Host, srv), gate)
	})
}

// With 10 % of requests dropped at XDP, every call still completes through
// the client's retransmissions.
func TestXSKBackendLossWithClient(t *testing.T) {
	forEachPeer(t, func(t *testing.T, offload bool) {
		link, srv, _ := xskPair(t, offload, 1, zr.WithPinnedMaps())
		maps := lossyMaps(t, link.A.Iface)
		c := clientIn(t, link.B.Host, srv, zr.WithRetransmission(5*time.Millisecond, 100*time.Millisecond, 0))
		callsSurviveLoss(t, c, maps)
	})
}

// TestXSKBackendLossOnCallerLanes: 10,000 synchronous Calls from 4
// goroutines through the lossy path, more callers than lanes: the calls on
// the lanes retransmit on their callers' threads, the rest on the loop,
// and every one completes with its sum.
func TestXSKBackendLossOnCallerLanes(t *testing.T) {
	link, srv, _ := xskPair(t, false, 1, zr.WithPinnedMaps())
	maps := lossyMaps(t, link.A.Iface)
	e := engineIn(t, link.B.Host, zr.WithCallerLanes(2))
	var c *zr.Client
	if err := link.B.Host.Do(func() (err error) {
		c, err = zr.Dial("udp", srv.Addr().String(), zr.WithEngine(e),
			zr.WithRetransmission(5*time.Millisecond, 100*time.Millisecond, 0), zr.WithMinRTO(time.Millisecond))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const callers, each = 4, 2500
	errs := make(chan error, callers)
	for g := range callers {
		go func() {
			for i := range each {
				n := uint64(g*each + i)
				r, err := c.Call(ctx, echo.SumMethod, sumPayload(n, 1), nil)
				if err != nil {
					errs <- fmt.Errorf("call %d failed under loss: %w", n, err)
					return
				}
				if v, k := protowire.ConsumeVarint(r.Payload[1:]); k < 0 || v != n+1 {
					errs <- fmt.Errorf("sum reply % x, want %d", r.Payload, n+1)
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cnt, err := maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt.LossDropped < callers*each/20 {
		t.Fatalf("only %d requests dropped; the knob did not bite", cnt.LossDropped)
	}
	lanes := e.Stats().LaneCalls
	if lanes == 0 {
		t.Fatal("no call took a caller lane")
	}
	if st := c.Stats(); st.Retransmits == 0 || st.Replies != callers*each {
		t.Errorf("stats %+v, want retransmissions and %d replies", st, callers*each)
	}
	t.Logf("%d calls (%d on lanes) completed through %d injected drops", callers*each, lanes, cnt.LossDropped)
}

// lossyMaps opens the pinned maps of the server on iface and turns the
// steering program's loss knob to 1 in 10.
func lossyMaps(t *testing.T, iface string) *bpf.Maps {
	t.Helper()
	maps, err := bpf.OpenPinned(bpf.PinDir(iface))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { maps.Close() })
	if err := maps.SetLoss(10); err != nil {
		t.Fatal(err)
	}
	return maps
}

// callsSurviveLoss makes 10,000 Sum calls, 512 in flight at a time,
// through a lossy path and checks that each completes with the right sum
// and that the loss knob really dropped requests.
func callsSurviveLoss(t *testing.T, c *zr.Client, counters interface{ Counters() (bpf.Counters, error) }) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const calls, window = 10000, 512
	done := make(chan *zr.Call, window)
	want := map[*zr.Call]uint64{}
	issued := 0
	issue := func() {
		want[c.Go(ctx, echo.SumMethod, sumPayload(uint64(issued), 1), nil, done)] = uint64(issued) + 1
		issued++
	}
	for issued < window {
		issue()
	}
	for i := 0; i < calls; i++ {
		call := <-done
		if call.Err != nil {
			t.Fatalf("call failed under loss: %v", call.Err)
		}
		if v, n := protowire.ConsumeVarint(call.Reply.Payload[1:]); n < 0 || v != want[call] {
			t.Fatalf("sum reply % x, want %d", call.Reply.Payload, want[call])
		}
		delete(want, call)
		call.Release()
		if issued < calls {
			issue()
		}
	}
	cnt, err := counters.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt.LossDropped < calls/20 {
		t.Fatalf("only %d requests dropped; the knob did not bite", cnt.LossDropped)
	}
	t.Logf("%d calls completed through %d injected drops", calls, cnt.LossDropped)
}

// Shutdown with a call in flight on a blocking handler: PINGs say draining,
// new requests are refused OVERLOADED, and the in-flight call still gets its
// reply before the loops stop.
func TestShutdownDrainsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backend zr.Backend
		offload bool
	}{{"uring", zr.BackendUring, false}, {"xsk/offload-on", zr.BackendXSK, true}, {"xsk/offload-off", zr.BackendXSK, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *zr.Server
			var gate *blockGate
			var c *zr.Client
			if tc.backend == zr.BackendXSK {
				var link *topo.Link
				link, srv, gate = xskPair(t, tc.offload, 1)
				c = clientIn(t, link.B.Host, srv)
			} else {
				srv, gate = testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring))
				c = clientIn(t, nil, srv)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			inflight := c.Go(ctx, blockingMethod, []byte("\x08\x07"), nil, nil)
			for i := 0; i < 2000 && gate.entered.Load() == 0; i++ {
				time.Sleep(5 * time.Millisecond)
			}
			if gate.entered.Load() == 0 {
				t.Fatal("blocking handler never ran")
			}
			shut := make(chan error, 1)
			go func() { shut <- srv.Shutdown(ctx) }()
			// Draining becomes visible to PING while the call is held.
			// Shutdown runs on its own goroutine, which a loaded machine may
			// start late: poll for a bounded time, not a bounded count.
			draining := false
			for deadline := time.Now().Add(10 * time.Second); !draining && time.Now().Before(deadline); {
				st, err := c.Ping(ctx)
				draining = err == nil && st == proto.PongDraining
				if !draining {
					time.Sleep(time.Millisecond)
				}
			}
			if !draining {
				t.Fatal("PING never reported draining")
			}
			_, err := c.Call(ctx, echo.EchoMethod, nil, nil)
			if st, ok := zr.StatusOf(err); !ok || st != proto.StatusOverloaded {
				t.Fatalf("request while draining: %v, want OVERLOADED", err)
			}
			gate.open()
			call := <-inflight.Done
			if call.Err != nil || !bytes.Equal(call.Reply.Payload, []byte("\x08\x07")) {
				t.Fatalf("in-flight call: %v % x", call.Err, call.Reply.Payload)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		})
	}
}

// A full worker pool answers OVERLOADED at once instead of queueing without
// bound, and the requests it holds still complete.
func TestBlockingPoolFullIsOverloaded(t *testing.T) {
	srv, gate := testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithWorkers(1, 1))
	c := dialKernel(t, srv.Addr())
	for id := uint64(1); id <= 3; id++ {
		req, _ := proto.EncodeRequest(make([]byte, 64), id, proto.MethodID(blockingMethod), 0, []byte{8, byte(id)})
		c.send(req)
	}
	// One request runs, one waits in the queue: the third finds no room.
	f := c.recv(10 * time.Second)
	if f == nil || f.RequestID() != 3 || f.Status() != proto.StatusOverloaded {
		t.Fatalf("first reply %v, want request 3 OVERLOADED", f)
	}
	gate.open()
	got := map[uint64]bool{}
	for len(got) < 2 {
		f := c.recv(10 * time.Second)
		if f == nil || f.Status() != proto.StatusOK {
			t.Fatalf("held request reply %v", f)
		}
		got[f.RequestID()] = true
	}
	if !got[1] || !got[2] {
		t.Fatalf("replies %v, want 1 and 2", got)
	}
	if st := srv.Stats().Total; st.Overloaded != 1 || st.Blocking != 2 {
		t.Fatalf("overloaded %d blocking %d", st.Overloaded, st.Blocking)
	}
}

// The uring backend under 10 % loss: the steering program runs on the
// server's interface with the service marked pass-to-kernel, so its loss
// knob drops requests before the kernel socket sees them, and the client's
// retransmissions still complete every call.
func TestUringBackendLossWithClient(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, xskPort)
	var prog *bpf.Program
	if err := link.A.Host.Do(func() (err error) {
		prog, err = bpf.Attach(link.A.Iface, bpf.Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if err := prog.AddService(bpf.Service{Port: xskPort, Flags: bpf.ServicePassToKernel}); err != nil {
		t.Fatal(err)
	}
	if err := prog.SetLoss(10); err != nil {
		t.Fatal(err)
	}
	srv, _ := testServerIn(t, link.A.Host.Do, addr.String(), zr.WithBackend(zr.BackendUring))
	c := clientIn(t, link.B.Host, srv, zr.WithRetransmission(5*time.Millisecond, 100*time.Millisecond, 0))
	callsSurviveLoss(t, c, prog)
}

// A retransmission of a request that a blocking handler still holds is
// dropped: the handler runs once and the one reply answers both copies.
func TestBlockingRetransmissionRunsOnce(t *testing.T) {
	srv, gate := testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring))
	c := dialKernel(t, srv.Addr())
	req, _ := proto.EncodeRequest(make([]byte, 64), 42, proto.MethodID(blockingMethod), 0, []byte{8, 1})
	c.send(req)
	for i := 0; i < 2000 && gate.entered.Load() == 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		c.send(req) // the client's retransmissions
	}
	// Every copy has been received once the duplicates are counted.
	for i := 0; i < 2000 && srv.Stats().Total.Dropped["duplicate"] < 3; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if d := srv.Stats().Total.Dropped["duplicate"]; d != 3 {
		t.Fatalf("duplicates dropped: %d, want 3", d)
	}
	gate.open()
	if f := c.recv(10 * time.Second); f == nil || f.RequestID() != 42 || f.Status() != proto.StatusOK {
		t.Fatalf("reply %v", f)
	}
	if n := gate.entered.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
	// Once answered, the same id is a new request again.
	c.send(req)
	if f := c.recv(10 * time.Second); f == nil || f.RequestID() != 42 || f.Status() != proto.StatusOK {
		t.Fatalf("reply to the resend after the answer: %v", f)
	}
}
