package engine

import "time"

// epoch is the origin of the engine's monotonic clock. It carries a
// monotonic reading, so times made from it (MonoTime) compare and
// subtract on the monotonic clock like any time.Now.
var epoch = time.Now()

// Mono reads the engine's monotonic clock: nanoseconds since epoch. It
// is one clock read where time.Now is two (the wall clock and the
// monotonic one), and a request path reads the clock at least twice.
func Mono() int64 { return int64(time.Since(epoch)) }

// MonoTime is the time.Time of a Mono reading.
func MonoTime(ns int64) time.Time { return epoch.Add(time.Duration(ns)) }

// passClock is a request's arrival time on its loop: read once per pass
// of the loop, at the first request the pass dispatches, and shared by
// every request of that pass. Each of them was received by then (the
// pass took them from completions and rings it had already looked at),
// so the time a request waits behind the others of its batch counts in
// its latency and queueing delay, as it should, and a batch of 64 costs
// one clock read instead of 64.
type passClock struct {
	ns    int64
	fresh bool
}

func (c *passClock) now() int64 {
	if !c.fresh {
		c.ns, c.fresh = Mono(), true
	}
	return c.ns
}
