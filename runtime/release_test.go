package runtime_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
)

// holder is an admission stage that holds a slot per admitted request,
// as a load shedder does, and must get every slot back.
type holder struct {
	next              zr.Handler
	admitted, release *atomic.Int64
}

func (h holder) ServeGWIR(req *zr.Request, resp *zr.Response) {
	h.admitted.Add(1)
	h.next.ServeGWIR(req, resp)
}

func (h holder) ReleaseGWIR(*zr.Request) { h.release.Add(1) }

// Every blocking request the admission chain admitted either reaches its
// handler chain or is released: a full pool and a deadline that passes in
// the worker queue both release it, once.
func TestAdmissionReleasesUnservedRequests(t *testing.T) {
	var admitted, released, ran atomic.Int64
	hold := func(m zr.MethodInfo, next zr.Handler) zr.Handler {
		if !m.Blocking {
			return next
		}
		return holder{next: next, admitted: &admitted, release: &released}
	}
	count := func(m zr.MethodInfo, next zr.Handler) zr.Handler {
		return zr.HandlerFunc(func(req *zr.Request, resp *zr.Response) {
			if m.Blocking {
				ran.Add(1)
			}
			next.ServeGWIR(req, resp)
		})
	}
	srv, gate := testServer(t, "127.0.0.1:0", zr.WithBackend(zr.BackendUring), zr.WithWorkers(1, 1),
		zr.WithAdmission(hold), zr.WithMiddleware(count))
	c := dialKernel(t, srv.Addr())
	// 1 takes the worker and blocks; 2 waits in the queue with a deadline
	// that passes before the worker is free; 3 finds the pool full.
	c.send(extRequest(t, 1, blockingMethod, func(x *proto.ExtBuilder) { x.SetAttempt(0) }, nil))
	for i := 0; i < 1000 && gate.entered.Load() == 0; i++ {
		time.Sleep(time.Millisecond) // a bound against hangs, not a timing check
	}
	if gate.entered.Load() != 1 {
		t.Fatal("the first blocking request never reached its handler")
	}
	c.send(extRequest(t, 2, blockingMethod, func(x *proto.ExtBuilder) { x.SetDeadline(time.Millisecond) }, nil))
	f := c.callFrame(extRequest(t, 3, blockingMethod, func(x *proto.ExtBuilder) { x.SetAttempt(0) }, nil))
	if f.Status() != proto.StatusOverloaded {
		t.Fatalf("third request: %v, want OVERLOADED (pool full)", f.Status())
	}
	time.Sleep(5 * time.Millisecond) // let request 2's deadline pass while it is queued
	gate.open()
	got := map[uint64]proto.Status{}
	for len(got) < 2 {
		f := c.recv(10 * time.Second)
		if f == nil {
			t.Fatalf("replies so far %v", got)
		}
		got[f.RequestID()] = f.Status()
	}
	if got[1] != proto.StatusOK || got[2] != proto.StatusDeadlineExceeded {
		t.Fatalf("replies %v, want 1 OK and 2 DEADLINE_EXCEEDED", got)
	}
	if a, r, n := admitted.Load(), released.Load(), ran.Load(); a != 3 || r != 2 || n != 1 {
		t.Fatalf("admitted %d, released %d, ran %d: want 3 = 2 released (pool full, expired) + 1 run", a, r, n)
	}
}
