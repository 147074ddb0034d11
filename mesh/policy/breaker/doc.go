// Package breaker is the client's circuit breaker: Google SRE adaptive
// throttling, one Breaker per endpoint and method, found through a Registry
// whose reads take no lock.
//
// # Formula
//
// From "Handling Overload", section "Client-Side Throttling", of Google's
// Site Reliability Engineering book (Beyer et al., O'Reilly 2016, ch. 21,
// equation 21-1), over a rolling window:
//
//	p = max(0, (requests − K·accepts) / (requests + 1))
//
// where requests counts every call the application tried (including those
// this breaker dropped), accepts those the endpoint accepted, and K = 1.5:
// the client keeps sending while requests < K·accepts and then drops
// locally with probability p, so that a backend accepting C calls/s keeps
// receiving about K·C (p → 1 − K·C/offered). A dropped call fails with
// ErrBreakerOpen without touching the network.
//
// Window and buckets are go-zero's (core/breaker/googlebreaker.go): 10 s in
// 40 buckets of 250 ms. Two recovery aids follow current go-zero: when no
// call has been let through for ForcePass (1 s) the next one is, as a
// probe; and p is scaled down by the buckets w since the last failure that
// had accepts. go-zero scales by (40 − w)/40; here it is
// max(0, (R − w)/R) with R = RecoveryBuckets = 4 (1 s). The reason is the
// formula's own pace: after a total outage the window holds ~offered·10 s
// requests and no accepts, accepts then grow by a factor e every W/K =
// 6.7 s, and with go-zero's scaling a simulated endpoint offered 1,000
// calls/s took 8.25 s to get 90 % of them back; the mesh wants 2 s (issue
// 13). The factor acts only while no call fails — one failure sets w to 0
// and the book's formula alone decides — so an endpoint that is still
// partly refusing is not trusted early. With it, recovery is at most one
// forced probe (1 s) plus R buckets. go-zero also subtracts a "protection" of 5 requests from the
// numerator; here that is Options.Protection, 0 by default, which keeps the
// book's formula exact.
//
// What counts (Classify): an answer with OVERLOADED, RATE_LIMITED or
// DEADLINE_EXCEEDED, and no answer at all (timeout), are failures; every
// other answer — OK, the application's statuses, DENIED, UNKNOWN_METHOD,
// INTERNAL — shows the endpoint took the call, so it is an accept. A call
// the caller abandoned before its deadline should not be marked.
//
// # Concurrency and cost
//
// Each bucket is one 64-bit word — a 22-bit bucket epoch and 14-bit counts
// of accepts, failures and drops — updated with one CAS, so marks are never
// lost and no lock is taken. A count that would pass 16,383 in one bucket
// (65 k calls/s to one endpoint method) halves the bucket's three counts
// first, which keeps their ratio. While the window holds no failure and no
// drop (requests = accepts, so p ≤ 0) Allow reads two words; otherwise it
// reads the 40 bucket words (five cache lines). A call that Allow passes
// writes nothing shared unless ≥ 10 ms went by since the last recorded
// pass. A client should keep the *Breaker in its endpoint entry and use
// Registry.Get when it sets the entry up, not per call.
//
// Times are monotonic nanoseconds ≥ 0 from any fixed origin, the same for
// every caller of one Breaker. A mark carrying a time a little older than
// the newest bucket is added to that bucket instead of resetting it.
package breaker
