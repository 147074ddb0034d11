// Package ratelimit is the server's per-method token-bucket rate limiter,
// built to run on every event loop without a lock or a per-request write to
// memory another loop writes.
//
// # Rules
//
// A Rule names the methods it covers (a glob over full method names
// "pkg.Service/Method"), optionally a caller service (the CALLER tag) and a
// source prefix, and a rate in calls per second with a burst. Each method a
// rule covers gets its own bucket unless the rule is Shared (one bucket for
// all of them). For a call, the rules are tried in order and the first whose
// method, caller and source match decides; a call no rule matches is not
// limited. A Shadow rule keeps its bucket and counts the calls it would
// have refused (ShadowLimited) but lets them through, for trying a limit
// on live traffic.
//
// # Formula
//
// Each bucket is a token bucket of rate R and depth B in GCRA form (the
// generic cell rate algorithm of ITU-T I.371, as in RFC 2697-style
// policers): one int64 "theoretical arrival time" tat, T = 1/R ns per
// token, tokens(now) = min(B, (now − tat)/T); taking n tokens sets
// tat = max(tat, now − B·T) + n·T. A refused call is told to retry after
// tat' + T − now, the time until the bucket holds one token again. T is
// rounded to whole nanoseconds, so rates above 1e9/s are refused and a rate
// R is kept to within R·T/round(T) (0.05 % at 1 M/s).
//
// # Loops
//
// A Limiter serves L loops (Config.Loops); each loop gets its own *Loop and
// calls Allow only from its own goroutine. The bucket's tat is shared, but a
// loop does not touch it per call: it leases k tokens at a time with one CAS
// and spends them locally, where
//
//	k = clamp(⌊B / (4·L)⌋, 1, 256)
//
// so the shared word is written once every k calls of a loop. Because the
// tokens come out of the one GCRA word, the global rate never drifts:
//
//   - from the Limiter's creation, the calls admitted over any time t are at
//     most R·t + B, exactly, whatever L;
//   - over any window of length t starting later, at most
//     R·t + B + L·(k−1) ≤ R·t + 1.25·B (when B ≥ 4L; otherwise k = 1 and
//     the bound is exact again), since each loop may hold up to k−1 leased
//     tokens taken before the window;
//   - a loop that goes idle strands at most k−1 tokens, so a saturated
//     limiter admits at least R·t + B − (L−1)·(k−1) over t from its start.
//
// With B = 100 and L = 8 (k = 3) that is at most 16 extra tokens in a
// window and 14 fewer in the worst case; the shared word takes one CAS per
// three calls of a loop.
//
// The design keeps skewed traffic exact, where a fixed split of R/L per loop
// would not: RSS sends one caller's flow to one queue, and with R/L per loop
// that caller would get R/L.
//
// Source addresses of UDP requests can be spoofed; a rule on a source prefix
// limits what claims to come from it, not who sent it.
package ratelimit
