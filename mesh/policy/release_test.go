package policy_test

import (
	"context"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/shed"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// Every call the shedder admits gives its slot back: served (the handler
// middleware), refused by a full pool or expired in the queue (the
// runtime's Releaser hook), so after the load only what is still running
// is in flight.
func TestShedderSlotsComeBack(t *testing.T) {
	pol := newPolicy(t, policy.ServerConfig{Loops: 1, Shed: &shed.Config{}})
	opts := append([]runtime.Option{runtime.WithBackend(runtime.BackendUring), runtime.WithWorkers(1, 1),
		runtime.WithLogger(quietLogger())}, pol.Options()...)
	srv, err := runtime.Listen("udp", loopback().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	gate, entered := make(chan struct{}), make(chan struct{}, 8)
	srv.HandleBlocking("test.Gate/Wait", func(req *runtime.Request, resp *runtime.Response) {
		entered <- struct{}{}
		<-gate
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	c := dial(t, nil, netipAddr(""), srv.Addr())
	send := func(id uint64, budget time.Duration) {
		var x proto.ExtBuilder
		x.SetAttempt(0)
		if budget > 0 {
			x.SetDeadline(budget)
		}
		f, err := proto.EncodeRequestExt(make([]byte, 128), id, proto.MethodID("test.Gate/Wait"), 0, &x, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.send(f)
	}
	send(1, 0) // takes the worker
	select {
	case <-entered:
	case <-time.After(callBound):
		t.Fatal("the first call never reached its handler")
	}
	send(2, time.Millisecond) // queued, and expires there
	send(3, 0)                // the pool is full
	if f := c.recv(callBound); f == nil || f.RequestID() != 3 || f.Status() != proto.StatusOverloaded {
		t.Fatalf("third call: %v, want OVERLOADED from the full pool", f)
	}
	time.Sleep(5 * time.Millisecond) // let call 2's deadline pass in the queue
	close(gate)
	got := map[uint64]proto.Status{}
	for len(got) < 2 {
		f := c.recv(callBound)
		if f == nil {
			t.Fatalf("answers so far %v", got)
		}
		got[f.RequestID()] = f.Status()
	}
	if got[1] != proto.StatusOK || got[2] != proto.StatusDeadlineExceeded {
		t.Fatalf("answers %v", got)
	}
	// One more call folds the completions in; it is then the only one
	// counted in flight (its own completion folds at the next admission).
	send(4, 0)
	if f := c.recv(callBound); f == nil || f.Status() != proto.StatusOK {
		t.Fatalf("fourth call: %v", f)
	}
	if st := pol.Stats().Shed; st == nil || st.Admitted != 4 || st.InFlight != 1 || st.Refused != 0 {
		t.Fatalf("shedder %+v, want 4 admitted and only the last in flight", st)
	}
}

// A server with more event loops than ServerConfig.Loops still limits
// exactly: the extra loops share one state behind a mutex (and the race
// detector sees no unsynchronized access).
func TestMoreLoopsThanConfigured(t *testing.T) {
	pol := newPolicy(t, policy.ServerConfig{Loops: 1})
	srv := startServer(t, nil, loopback().String(), pol, runtime.WithBackend(runtime.BackendUring), runtime.WithQueues(0, 1, 2, 3))
	if _, err := pol.Load(mustParse(t, "limits:\n  - method: zerohop.Echo/Echo\n    rate: 0.001\n    burst: 40\n"), "test"); err != nil {
		t.Fatal(err)
	}
	const clients, calls = 8, 30
	ok, limited := 0, 0
	for i := range clients {
		c := dial(t, nil, netipAddr(""), srv.Addr()) // a new port: SO_REUSEPORT spreads clients over loops
		for j := range calls {
			f := c.call(uint64(j), "zerohop.Echo/Echo", "", callBound)
			switch {
			case f == nil:
				t.Fatalf("client %d call %d: no answer", i, j)
			case f.Status() == proto.StatusOK:
				ok++
			case f.Status() == proto.StatusRateLimited:
				limited++
			default:
				t.Fatalf("status %v", f.Status())
			}
		}
	}
	loops := map[int]bool{}
	for _, l := range srv.Stats().Loops {
		if l.Requests > 0 {
			loops[l.Queue] = true
		}
	}
	t.Logf("%d loops took calls; %d OK, %d RATE_LIMITED", len(loops), ok, limited)
	// two shards (one loop's and the overflow one) lease k = 40/(4·2) = 5
	// tokens at a time, so at most 2·(k−1) are stranded
	if ok > 40 || ok < 40-2*4 || ok+limited != clients*calls {
		t.Fatalf("%d admitted of a burst of 40 (at most %d stranded in leases), %d limited", ok, 2*4, limited)
	}
	if len(loops) < 2 {
		t.Logf("only %d loop took calls: the overflow shard was not exercised this time", len(loops))
	}
}
