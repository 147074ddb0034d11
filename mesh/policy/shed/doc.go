// Package shed is the server's adaptive load shedder: it refuses calls
// early (OVERLOADED with RETRY_AFTER, before the payload is parsed) once
// the server holds more calls than it can finish at the rate it has shown
// it can finish them.
//
// # Formula (go-zero's adaptive shedder)
//
// From go-zero core/load/adaptiveshedder.go, which applies Little's law
// (L = λ·W): over a rolling window of 5 s in 50 buckets of 100 ms, ignoring
// the bucket in progress,
//
//	maxPass   = the most calls completed in one bucket (at least 1)
//	minRT     = the least per-bucket average handler time (1 s when no
//	            bucket has completions, large so nothing is refused)
//	maxFlight = max(1, maxPass · minRT / bucket)     (calls)
//	factor    = clamp((1000 − cpu) / (1000 − 900), 0.1, 1)
//
// and a call is refused when the overload gate is open, or was open less
// than a cool-off (1 s) ago and a call has been refused since, and both the in-flight count and its
// moving average (β = 0.9, updated at each completion) exceed
// maxFlight · factor. cpu is in per mille; go-zero's threshold is 900
// (90 %), sampled every 250 ms and smoothed with β = 0.95 (core/stat
// usage.go). Here the CPU comes from /proc/stat (CPUSampler), or any
// func the caller gives.
//
// # The overload gate, and why not CPU alone
//
// go-zero opens the gate on CPU ≥ 90 % only. zerohop loops busy-poll while
// traffic flows, and a handler blocked on I/O or a lock overloads a server
// without using CPU, so CPU alone both opens too readily and misses
// overload. The gate here is open when any of these holds:
//
//   - cpu ≥ CPUThreshold (900 ‰, go-zero);
//   - the queueing delay the runtime measured for this call (RX to the
//     handler's start on the loop) ≥ QueueDelay, 5 ms — CoDel's target
//     delay (RFC 8289 §4.3), far above a loop's normal microseconds;
//   - completed calls waited for a worker ≥ WaitRatio (1) × minRT, as a
//     moving average over completions (β = 0.9, go-zero's flyingBeta):
//     time in a queue after admission, the Little's-law excess made
//     visible. Per completion, not per bucket: with a bucket's delay the
//     gate reopened a bucket late after each cool-off and let 100 ms of
//     overload in every second (p99 182 ms in the simulation). Once the
//     shedder refuses, the wait gate holds down to a tenth of that
//     (hysteresis): shedding itself keeps the queue short, and without the
//     hold the gate shut a cool-off later, let a few milliseconds of
//     overload in and reopened, once a second (p99 5 ms against 1 ms with
//     two workers). A bound learnt too low leaves the workers idle and the
//     wait at zero, so the gate still shuts and the bound is relearnt.
//
// minRT is taken from the handler's own time, not from admission to reply
// (go-zero starts a goroutine per call, so its two are the same; zerohop
// queues calls for a worker pool). With the queue wait inside minRT, a
// server overloaded from a cold start learns its queueing as its normal
// response time and bounds nothing: simulated at 3× capacity that gave a
// p99 of 413 ms against 1 ms unloaded. With the handler's time the p99 of
// served calls stays within 2.7× the unloaded p99 for 2, 4 and 16 workers,
// from a cold start or after a second at half load, while ≥ 90 % of
// capacity is served (TestOverloadKeepsLatencyBounded).
//
// Until the window holds a complete bucket with completions (a cold start,
// or after 5 s without traffic) the bucket in progress stands in: maxPass
// is its completions so far scaled to a whole bucket (counting at least
// 1 ms elapsed) and minRT its average so far. go-zero has no such step, and
// without it a server overloaded from its first call queues a whole bucket
// of calls unchecked.
//
// The gate alone refuses nothing: the in-flight test above still has to
// fail, so a server with spare concurrency keeps serving.
//
// Why this and not Netflix's Gradient2 (concurrency-limits
// Gradient2Limit.java: limit ← limit·(1−s) + s·(limit·clamp(long/short,
// 0.5, 1) + 4), s = 0.2, long = EMA over 600 samples; here as Gradient, the
// alternative): its baseline is an average that catches up with the
// queueing it should be measuring (its own doc says the baseline "grows
// using exponential decay but lags"), so under a lasting overload the
// limit settles where 4/(1 − long/short) balances, not at the worker
// count, and its default floor of 20 calls is above the few workers a
// zerohop server runs. In the same simulation (4 workers, 1 ms calls, 3×
// capacity) Gradient2 held p99 at 15.9 ms with its floor of 20 and 9.4 ms
// with a floor of 1 (its limit near 15), against 3.0 ms for the default
// (TestGradient2OnTheOverloadScenario). maxPass and minRT are a max and a
// min over 5 s: they do not drift while the overload lasts, and the bound
// follows the worker count by itself.
//
// # Contract with the runtime
//
// Shedder has one *Loop per event loop; Allow, Done and Release of a Loop
// are called from that loop's goroutine only (Stats may be read anywhere),
// so the hot path is single-writer: no lock, no CAS, and its atomic stores
// (counters for Stats) go to lines no other loop writes. Allow must run
// before the call is queued for a worker; Done gets the handler's run time
// and the time it waited for a worker, so the runtime records two
// timestamps in the job (admission, handler start). Every call Allow
// admitted ends with exactly one Done (it was served) or Release (it was
// dropped unserved). A refused call's retry hint is one bucket (100 ms),
// the soonest the shedder's bound changes.
package shed
