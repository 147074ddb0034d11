// Package health decorates a runtime.Balancer with endpoint health:
// active PING probes and passive outlier ejection. Wrap(inner, cfg)
// returns a runtime.BalancerBuilder whose balancers hand the inner
// balancer (mesh/balance's P2C, say) only the endpoints that look healthy,
// and hand it a new set whenever that changes.
//
// # Active probes
//
// Each endpoint that discovery does not call unhealthy is sent a PING
// (runtime.SubConn.Ping) every Interval, ± Jitter × Interval drawn
// uniformly, the first one within the first Interval. A probe that gets no
// PONG within Timeout fails; UnhealthyThreshold failures in a row take
// the endpoint out, HealthyThreshold PONGs in a row bring it back.
// Defaults: 1 s ± 20 %, 500 ms, 3 and 2 (HAProxy's fall 3 / rise 2; a
// shorter interval than its 2 s because here passive detection is the
// fast path and probes the slow, sure one). A PONG with status draining
// (proto.PongDraining) takes the endpoint out at once, whatever the
// thresholds; a serving PONG brings it back at once. Endpoints start
// healthy: discovery listed them as serving. Probing follows discovery's
// verdict from update to update: an endpoint it calls unhealthy is not
// probed (its prober stops), and one it calls serving again is probed
// from then on and starts healthy again, what probes said before being
// stale; an endpoint that leaves has its prober stopped.
//
// A failed call (below) also probes the endpoint at once (at most every
// 10 ms): a timeout does not tell a lost datagram from a
// dead server, but a PING to a port nobody serves is answered by an ICMP
// unreachable, which ejects the endpoint at once. This is what takes a
// killed server out within a round trip of its first failure: after
// that failure p2c stops picking it, so the calls that would have met the
// ICMP are not sent.
//
// # Passive outlier detection
//
// Done sees every attempt. Failures, in Envoy's sense of a 5xx for
// outlier detection (consecutive_5xx, with local-origin errors not split
// off, its default): an attempt with no reply (a timeout, a socket error)
// and the statuses INTERNAL (500), OVERLOADED (503) and DEADLINE_EXCEEDED
// (504). OVERLOADED counts, as Envoy counts a 503: a server that refuses
// call after call is as useless to this client as a dead one, and a
// draining server answers OVERLOADED; the ejection cap keeps an overload
// of every server from emptying the service. Everything else is a
// success: OK, the application's statuses, and the client-side refusals
// (UNKNOWN_METHOD, BAD_FRAME, DENIED, RATE_LIMITED — a 429 is not a 5xx —
// and TOO_LARGE), which say the server is there and answering.
//
// An endpoint is ejected
//
//   - after ConsecutiveFailures failures in a row (default 5, Envoy's
//     consecutive_5xx);
//   - at once when an attempt or a probe fails with ECONNREFUSED,
//     EHOSTUNREACH or ENETUNREACH: an ICMP unreachable says nothing
//     listens there, the datagram analogue of a refused connection, on
//     which gRPC takes a subchannel out of the picker at once
//     (TRANSIENT_FAILURE) rather than counting; such an ejection is
//     neither subject to the cap below nor counted in it;
//   - when its success rate over the last SuccessRateWindow (default 1 s)
//     is below SuccessRateMin (default 0.5) with at least
//     SuccessRateMinRequests attempts (default 20). Envoy's and gRPC's
//     failure-percentage ejection uses 85 % failures, 50 requests, a 10 s
//     interval and needs 5 hosts; here the window is short, for fast
//     detection of an endpoint failing half its calls, which with failover
//     doubles their cost, and there is no minimum of hosts.
//
// The n-th ejection lasts min(MaxEjection, BaseEjection × 2ⁿ⁻¹): 1 s, 2 s,
// 4 s … up to 30 s by default, exponential like Envoy's 30 s × n, 300 s
// at most, but scaled for recovery in seconds; every 10 s (Envoy's
// interval) an endpoint stays healthy, n drops by one. At most
// MaxEjectedFraction of the endpoints (default 10 %, Envoy's
// max_ejection_percent, but always at least one) are ejected at a time; a
// detection over the cap is counted and not acted on. When an ejection
// ends the endpoint is on probation: it gets exactly one call (the
// picker hands it out before asking the inner picker), and the result of
// the first attempt it answers decides: a success returns it to the inner
// balancer, a failure ejects it again for the next, longer time. A trial
// call that ends without a result within ProbationTimeout (default 2 s)
// opens another.
//
// Every ejection records when the failures that caused it began
// (EndpointStats.FirstFailure) and when it happened (EjectedAt), so that
// tests and operators can see how fast an endpoint was dropped.
//
// # What the inner balancer sees
//
// The healthy endpoints: not unhealthy by discovery, not failing probes,
// not draining by PONG, not ejected or on probation. When none is, the
// ones draining by PONG; when none of those either, every endpoint
// discovery lists (panic mode, as Envoy's panic threshold: with every
// endpoint looking unhealthy, trying them is better than failing every
// call at once). The inner balancer still applies discovery's own
// serving/draining preference.
//
// # Cost
//
// Done only touches atomics of the endpoint (found in an immutable map
// keyed by *runtime.SubConn) and, when a detection trips, signals a
// goroutine without blocking; that goroutine ejects, ends ejections and
// re-publishes. Pick is the inner picker's plus a check of the (usually
// empty) list of endpoints on probation. Neither allocates. Probes run on
// one goroutine per endpoint.
package health
