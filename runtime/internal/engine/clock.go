package engine

import (
	"time"
	_ "unsafe" // go:linkname
)

// nanotime is the runtime's monotonic clock: one vDSO read. time.Since
// costs about twice its instructions (the wall-clock-free path still
// checks for a synctest bubble and converts), and the request path reads
// the clock for every request.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// epoch is the origin of the engine's monotonic clock: epochNano is its
// nanotime reading, epoch the time.Time read with it (monotonic reading
// included, so times made from it by MonoTime compare and subtract on the
// monotonic clock like any time.Now; the two reads differ by well under a
// microsecond).
var (
	epochNano = nanotime()
	epoch     = time.Now()
)

// Mono reads the engine's monotonic clock: nanoseconds since epoch.
func Mono() int64 { return nanotime() - epochNano }

// MonoTime is the time.Time of a Mono reading. Its monotonic reading is
// exact; its wall clock is the process start's plus the monotonic time
// since, so after the system clock is stepped it differs from time.Now's
// wall clock by the step (as any time.Time taken before the step does).
// Durations and comparisons with other times use the monotonic reading.
func MonoTime(ns int64) time.Time { return epoch.Add(time.Duration(ns)) }

// passClock is a request's arrival time on its loop: read once per batch
// the loop takes from the kernel (a batch of completions reaped, or one
// Poll of a source's rings: Dispatcher.NewPass starts each), at the first
// request of the batch it dispatches, and shared by every request of that
// batch. Each of them was received by then (the batch was taken before
// the read), so a stamp is never earlier than the request's arrival; the
// time a request waits behind the others of its batch counts in its
// latency and queueing delay, as it should; and a batch of 64 costs one
// clock read instead of 64.
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
