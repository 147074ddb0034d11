package discovery

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff spaces out retries against a source that is unreachable: the
// n-th consecutive failure (n from 0) waits
//
//	d = min(Max, Base·2ⁿ),  wait = d/2 + U[0, d/2)
//
// which is the "equal jitter" scheme of M. Brooker, "Exponential Backoff
// And Jitter", AWS Architecture Blog, 2015: the wait grows exponentially,
// is bounded by Max, and never drops below half of d, while the random
// half spreads out clients that failed together (an etcd restart seen by
// every server at once). The defaults, Base 100 ms and Max 3 s, retry
// quickly after a blip and at least once per default lease TTL during an
// outage. The zero value uses the defaults. A Backoff is not safe for
// concurrent use.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Default backoff bounds (see Backoff).
const (
	DefaultBackoffBase = 100 * time.Millisecond
	DefaultBackoffMax  = 3 * time.Second
)

// Next returns the wait before the next retry and counts one more failure.
func (b *Backoff) Next() time.Duration {
	base, ceiling := b.Base, b.Max
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if ceiling <= 0 {
		ceiling = DefaultBackoffMax
	}
	d := ceiling
	// 2ⁿ·base overflows past n ≈ 30 for any base of a millisecond or more;
	// by then d is long at its ceiling.
	if b.n < 30 && base<<b.n < ceiling {
		d = base << b.n
	}
	b.n++
	half := d / 2
	return half + rand.N(d-half)
}

// Reset starts the next failure at Base again (after a success).
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits d or until ctx ends, and reports whether the wait ran out
// (false: ctx ended).
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
