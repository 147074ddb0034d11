// Package balance holds the runtime.BalancerBuilders of zerohop: P2C, the
// default, and RoundRobin, the simple alternative. Both plug into
// runtime.DialService through runtime.WithBalancer (package mesh wraps P2C
// in health checking for the one-call default).
//
// # Which endpoints are picked
//
// Both balancers pick among the endpoints discovery calls serving
// (runtime.HealthServing); only when none serves, among the draining ones;
// never an unhealthy one. With nothing left, Pick returns
// runtime.ErrNoSubConnAvailable and calls fail fast with
// runtime.ErrNoEndpoints. A picker avoids PickInfo.Failed, the endpoint a
// failed attempt went to, whenever it has another. Weights
// (Endpoint.Weight, 0 counting as 1) are honoured by both.
//
// # P2C over peak-EWMA
//
// Each pick draws two distinct endpoints at random — uniformly, or in
// proportion to their weights when these differ (the second among the
// others) — and takes the one with the lower load
//
//	load = cost × (inflight + 1) / weight
//
// where inflight is SubConn.InFlight (calls waiting for the endpoint's
// reply) and cost is the endpoint's peak-EWMA latency. This is Linkerd's
// and Finagle's "power of two choices over peak EWMA" (Finagle
// PeakEwma.scala, tower's load::peak_ewma in linkerd2-proxy; M.
// Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing",
// 2001, for why two random candidates are nearly as good as the best of
// all). Dividing by the weight makes the endpoints' in-flight counts settle
// in proportion to their weights under load, as Envoy's least-request
// balancer does with weight / (active + 1); drawing by weight lets a heavy
// endpoint take more than the 2/(n) of picks it can win when drawn
// uniformly (weights 1, 1, 4 want two thirds for the last).
//
// p2c balances latency, not counts: endpoints of one weight get equal
// shares only when their costs are equal. Between identical servers whose
// handlers take microseconds, scheduling noise on a busy machine makes the
// service times, and with the peak rule below the costs, differ by more
// than the handler's own time, and the shares follow (tests measured 28 to
// 42 % for three identical echo servers on a shared 2-core VM, where round
// robin gave a third each). Use RoundRobin where exact shares matter more
// than latency.
//
// The cost follows samples of latency: the server-reported SERVICE_TIME of
// a reply (AttemptResult.ServiceTime), or, for a reply that carries none,
// the client's round trip (AttemptResult.RTT). With the previous cost c
// written at time s, a sample x at time t gives
//
//	c' = x                        if x > c   (a slower sample replaces the estimate at once)
//	c' = c·w + x·(1 − w)          otherwise, with w = exp(−(t − s)/τ)
//
// and a pick at time t reads the cost decayed as c·exp(−(t − s)/τ), so an
// endpoint that stopped answering slowly, or stopped being picked, becomes
// attractive again within a few τ. τ = 10 s (DefaultDecay), Linkerd's and
// Finagle's default decay. The weight w depends on the time between
// samples, not on their number, so the estimate forgets at the same pace
// at 10 and at 100,000 calls a second (Finagle, after Eckner, "Algorithms
// for Unevenly Spaced Time Series"). Unlike Finagle the read does not
// write the decayed value back: picks only read shared state.
//
// An endpoint with no sample yet has load 0 while nothing is in flight to
// it, so it is tried at once, and a penalty (2⁴⁷ ns, Finagle's
// Long.MaxValue >> 16) plus its in-flight count while its first call is
// pending, so one unknown endpoint is not flooded before it answered
// (Finagle's rule; Linkerd starts instead from a default RTT of 30 ms,
// which at the microsecond latencies of one node would keep a new endpoint
// out for tens of seconds).
//
// A failed attempt — no reply (a timeout, an ICMP unreachable) or a
// refusal (OVERLOADED, RATE_LIMITED) — is a sample of
//
//	x = max(RetryAfter, 2·c, 1 ms)
//
// so each failure at least doubles the cost at once and a refusal keeps
// the endpoint out for about as long as the server asked; a fast refusal
// must not make an endpoint look fast (Finagle counts failures by their
// time to fail, which rewards exactly that). Other statuses are answers
// like any other and sample their latency; ejecting endpoints that answer
// errors is mesh/health's job.
//
// Neglected endpoints (go-zero's p2c, core/load and zrpc's p2c picker):
// when the endpoint that lost the comparison has not been picked for
// DefaultForcePick (1 s, go-zero's forcePick), it is picked instead, once,
// so that every endpoint keeps a fresh sample and a recovered one comes
// back even while its decayed cost is still high. The time of the last
// pick is written only when it is older than a sixteenth of that period,
// so picks do not all write one shared word.
//
// # Round robin
//
// RoundRobin cycles through a schedule built once per update with the
// smooth weighted round robin of nginx (ngx_http_upstream_get_peer): an
// endpoint of weight w appears w times per cycle, spread out rather than
// in a burst. Weights are divided by their greatest common divisor, and a
// cycle longer than 4,096 picks is scaled down to about that (each
// endpoint at least once), which changes ratios by at most one part in
// the scaled weight. Each client starts at a random place in the cycle.
//
// # Cost
//
// Pickers are immutable: every update builds a new one. Per-endpoint
// state lives in atomics in a map keyed by *runtime.SubConn that is
// rebuilt (keeping the state of endpoints that stay) at each UpdateState,
// so Pick and Done take no lock and allocate nothing; random numbers come
// from math/rand/v2's top-level functions, which use the Go runtime's
// per-thread generator without a lock. Done runs on the client loop; the
// estimate it writes is read by picks on any goroutine, which tolerate
// reading a cost and a time stamp from two different samples (the decay
// is then off by one sample's interval).
package balance
