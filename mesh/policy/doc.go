// Package policy plugs the mesh's request policies into the runtime: on
// the server as admission and handler middleware (Server), on the client
// as interceptors (Client). Each policy is a small type in its own package
// with its formula, constants and their sources in its doc comment:
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
// loops. docs/policy.md is the operator's view: the file format, how
// rules reach the XDP program, the admin API and `zerohop acl`.
//
// # Server
//
// NewServer builds the chains; Server.Options installs them
// (runtime.WithAdmission(Admission()...), runtime.WithMiddleware(
// Middleware()...)). Admission is where their order is set, and it runs on
// the loop, before the payload is parsed and before a blocking call takes
// a worker's queue slot:
//
//  0. (the engine) a call that arrived expired is answered
//     DEADLINE_EXCEEDED before any stage, so it spends no token or slot;
//     the engine checks again when a worker takes a blocking call.
//  1. authz: an unauthorized caller must not spend anyone's rate limit or
//     learn whether the server is loaded; DENIED with the rule's message.
//  2. ratelimit: RATE_LIMITED, RETRY_AFTER = time to the next token
//     (rounded up to the tag's microseconds), charged at the call's
//     arrival time.
//  3. shed, blocking methods only: OVERLOADED, RETRY_AFTER = one bucket
//     (100 ms). Last, because an admitted call holds an in-flight slot:
//     the handler middleware (Middleware) times the handler and gives the
//     slot back when it returns (or panics), and the runtime's Releaser
//     hook gives it back when the call never reaches its handler (full
//     pool, expired in the queue, shutdown). A loop method holds its loop
//     while it runs, so at most one call per loop is in flight there and
//     Little's bound cannot be passed: the shedder's resource is the
//     worker pool.
//
// Per-loop state (the rate limiter's leased tokens, the shedder's window)
// is found by Request.Queue, which names the loop, and assigned to loops
// on first use (ServerConfig.Loops of them; more loops share one state
// behind a mutex, logged once). A blocking call's completion happens on a
// worker: it is added to its loop's counters (three atomic adds) and the
// loop folds them into its shedder at its next admission (DoneBatch), so
// the shedder keeps one writer.
//
// The policy in force (authz rules and rate limits, from one Document)
// is one immutable value behind an atomic pointer: Load, LoadFile, Watch
// and the admin API (Handler) compile a new one and swap it in whole; on
// any error the old one stays. Rate-limit buckets whose limit did not
// change carry over a reload (ratelimit.Limiter.Carry). Methods are learnt
// as they are registered and the policy is recompiled for them. With an
// ACL attached (AttachACL, the maps of the interface's XDP program) every
// load also rewrites the port's XDP ACL entries with the policy's L4 part
// (authz.Policy.L4), and XDPDrops attributes the kernel's hit counts to
// the rules.
//
// # Client
//
// Client.Interceptors, per attempt, in order:
//
//  1. deadline: never send an attempt whose call's deadline has passed
//     (ErrDeadline, a context.DeadlineExceeded).
//  2. breaker: Allow or fail fast with breaker.ErrBreakerOpen; after the
//     attempt, Mark with Classify(status, answered) — OVERLOADED,
//     RATE_LIMITED, DEADLINE_EXCEEDED and no answer count against the
//     endpoint method; an attempt the caller abandoned counts for nothing.
//
// Retransmitting only while an RTO still fits (deadline.Retry) is the
// client engine's, which knows its RTO.
package policy
