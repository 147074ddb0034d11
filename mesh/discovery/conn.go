package discovery

import (
	"sync"
	"sync/atomic"

	"github.com/zerohop/zerohop/runtime"
)

// Counters count what the resolvers of one builder did. A builder shares
// one Counters among the Conns of all its resolvers and returns
// Counters.Stats from its own Stats method. The zero value is ready.
type Counters struct {
	updates  atomic.Uint64
	repeats  atomic.Uint64
	reported atomic.Uint64
}

// Stats is a snapshot of Counters.
type Stats struct {
	// Updates is how many states were handed to ResolverConns.
	Updates uint64
	// Repeats is how many states were not handed over because they equalled
	// the previous one.
	Repeats uint64
	// Reported is how many errors were handed to ResolverConns.
	Reported uint64
}

// Stats reads the counters.
func (c *Counters) Stats() Stats {
	return Stats{Updates: c.updates.Load(), Repeats: c.repeats.Load(), Reported: c.reported.Load()}
}

// Conn stands between a resolver's goroutines and the runtime.ResolverConn
// it was built with. It serialises the calls, drops a state equal to the
// previous one unless an error came in between, and stops every call for
// good at Close, which is how a resolver keeps its promise that nothing
// reaches the ResolverConn after Resolver.Close returns.
//
// Conn holds its lock while it calls the ResolverConn, so a ResolverConn
// must not call Resolver.Close from inside UpdateState or ReportError.
type Conn struct {
	mu       sync.Mutex
	cc       runtime.ResolverConn
	counters *Counters
	closed   bool
	pushed   bool // last holds the state the ResolverConn has now
	last     runtime.ResolverState
}

// NewConn wraps cc; counters may be nil.
func NewConn(cc runtime.ResolverConn, counters *Counters) *Conn {
	if counters == nil {
		counters = new(Counters)
	}
	return &Conn{cc: cc, counters: counters}
}

// Update hands state to the ResolverConn unless it equals the state
// handed over last and no error was reported since. It reports whether the
// state was handed over. state belongs to the Conn afterwards.
func (c *Conn) Update(state runtime.ResolverState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.pushed && EqualStates(c.last, state) {
		c.counters.repeats.Add(1)
		return false
	}
	c.cc.UpdateState(state)
	c.last, c.pushed = state, true
	c.counters.updates.Add(1)
	return true
}

// Error reports err to the ResolverConn and makes the next Update go
// through even if it repeats the last state.
func (c *Conn) Error(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.cc.ReportError(err)
	c.pushed = false
	c.counters.reported.Add(1)
}

// Close stops all later calls; one in progress finishes before Close
// returns.
func (c *Conn) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}
