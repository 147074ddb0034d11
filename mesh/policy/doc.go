// Package policy gathers the mesh's request policies, each a small type in
// its own package with its formula, constants and their sources in its doc
// comment:
//
//	authz      who may call what: first-match rules → DENIED, and the XDP ACL
//	deadline   expired work → DEADLINE_EXCEEDED; the client's send/retry budget
//	ratelimit  per-method token buckets → RATE_LIMITED with RETRY_AFTER
//	shed       go-zero's adaptive shedder → OVERLOADED with RETRY_AFTER
//	breaker    Google SRE client-side throttling per endpoint method
//
// None of them imports the runtime. Each has a hot-path method that takes
// the current time as monotonic nanoseconds (int64, one origin per
// process), so it is tested on a fake clock and never reads a clock
// itself; none allocates, and none takes a lock shared between event
// loops. The runtime's Middleware and Interceptor adapters (not here yet)
// call them in this order:
//
// Server, per request, before the payload is parsed:
//
//  1. authz: an unauthorized caller must not spend anyone's rate limit or
//     learn whether the server is loaded; DENIED with the rule's message.
//  2. deadline: work nobody waits for is refused before it takes a token
//     or a slot; DEADLINE_EXCEEDED.
//  3. ratelimit: RATE_LIMITED, RETRY_AFTER = time to the next token.
//  4. shed: last, because an admitted call holds an in-flight slot that
//     must be released (Done or Release) however the call ends; OVERLOADED,
//     RETRY_AFTER = one bucket (100 ms).
//
// Client, per attempt:
//
//  1. deadline: never send a call whose deadline has passed; retransmit
//     only while an RTO still fits; the DEADLINE tag carries the budget.
//  2. breaker: Allow or fail fast with ErrBreakerOpen; after the attempt,
//     Mark with Classify(status, answered) — OVERLOADED, RATE_LIMITED,
//     DEADLINE_EXCEEDED and no answer count against the endpoint.
//
// The benchmarks in this package run one request's worth of all of them.
package policy
