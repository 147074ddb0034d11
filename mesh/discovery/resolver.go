package discovery

import (
	"context"
	"sync"

	"github.com/zerohop/zerohop/runtime"
)

// Resolver is the runtime.Resolver of a source that runs one goroutine:
// Start runs the source's watch function on its own goroutine with a
// Conn to push through, a context that ends at Close, and a channel that
// ResolveNow signals. Close stops the Conn first, so nothing reaches the
// ResolverConn once it returns, then ends the context and waits for the
// watch function to return.
type Resolver struct {
	conn   *Conn
	now    chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Start builds the Conn around cc (counted in counters, which may be nil)
// and runs watch on a new goroutine. watch must return once ctx ends.
func Start(cc runtime.ResolverConn, counters *Counters, watch func(ctx context.Context, r *Resolver)) *Resolver {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Resolver{conn: NewConn(cc, counters), now: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		watch(ctx, r)
	}()
	return r
}

// Conn is what the watch function pushes through.
func (r *Resolver) Conn() *Conn { return r.conn }

// Now delivers one value after each burst of ResolveNow calls.
func (r *Resolver) Now() <-chan struct{} { return r.now }

// ResolveNow implements runtime.Resolver; calls that come while one is
// pending coalesce.
func (r *Resolver) ResolveNow() {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

// Close implements runtime.Resolver; it may be called more than once.
func (r *Resolver) Close() {
	r.once.Do(func() {
		r.conn.Close()
		r.cancel()
		<-r.done
	})
}
