package breaker

import (
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// ErrBreakerOpen is returned by Allow for a call the breaker drops. The
// call was never sent; the endpoint has been refusing this method's calls.
var ErrBreakerOpen = errors.New("breaker: call dropped by client-side throttling: the endpoint has been refusing this method's calls (OVERLOADED, RATE_LIMITED, DEADLINE_EXCEEDED or no answer)")

// Constants of the throttling formula and its window; see the package doc
// for their sources.
const (
	K         = 1.5
	Window    = 10 * time.Second
	Buckets   = 40
	Bucket    = Window / Buckets // 250 ms
	ForcePass = time.Second
	// RecoveryBuckets: see Options.RecoveryBuckets and the package doc.
	RecoveryBuckets = 4
)

// passGranularity bounds how often a passing Allow writes lastPass.
const passGranularity = int64(10 * time.Millisecond)

// Bucket word layout: epoch in the top 22 bits, then accepts, failures,
// drops in 14 bits each.
const (
	countBits  = 14
	countMax   = 1<<countBits - 1
	epochBits  = 64 - 3*countBits
	epochMask  = 1<<epochBits - 1
	shiftEpoch = 3 * countBits
	shiftAcc   = 2 * countBits
	shiftFail  = countBits
	shiftDrop  = 0
)

// Options tune a Breaker. The zero value is the SRE book's formula with
// K = 1.5 and the package's window.
type Options struct {
	// K is the formula's multiplier (> 1); 0 means 1.5.
	K float64
	// Protection is subtracted from requests in the numerator (go-zero
	// uses 5, so the first few failures drop nothing); 0 by default.
	Protection int
	// RecoveryBuckets is how many buckets with accepts and no failure
	// bring the drop probability to zero; 0 means RecoveryBuckets (4, one
	// second); Buckets (40) gives go-zero's scaling.
	RecoveryBuckets int
	// Rand returns uniformly random 64-bit values for the drop decision;
	// nil means math/rand/v2's per-thread generator. Tests pass a seeded
	// one (then only one goroutine may call Allow).
	Rand func() uint64
}

// Outcome is what a finished call tells the breaker.
type Outcome uint8

const (
	// Success: the endpoint took the call (whatever its answer).
	Success Outcome = iota
	// Failure: the endpoint refused for overload, or never answered.
	Failure
)

// Classify maps a call's end to an Outcome: answered is false for a call
// that timed out without a reply; status is the reply's status otherwise.
func Classify(status proto.Status, answered bool) Outcome {
	if !answered {
		return Failure
	}
	switch status {
	case proto.StatusOverloaded, proto.StatusRateLimited, proto.StatusDeadlineExceeded:
		return Failure
	}
	return Success
}

// Breaker throttles the calls of one endpoint method. Its methods are safe
// for concurrent use and do not allocate.
type Breaker struct {
	k          float64
	protection float64
	recovery   int
	rand       func() uint64
	lastPass   atomic.Int64
	// lastBad is the time of the latest failure or drop: with none in
	// the window, requests = accepts and p ≤ 0, so Allow skips the buckets.
	lastBad atomic.Int64
	_       [32]byte // the bucket words start on their own line
	buckets [Buckets]atomic.Uint64
}

// New returns a Breaker with the given options.
func New(opts Options) *Breaker {
	b := &Breaker{k: opts.K, protection: float64(opts.Protection), recovery: opts.RecoveryBuckets, rand: opts.Rand}
	if b.recovery <= 0 || b.recovery > Buckets {
		b.recovery = RecoveryBuckets
	}
	if b.k <= 1 {
		b.k = K
	}
	if b.rand == nil {
		b.rand = rand.Uint64
	}
	b.lastPass.Store(-int64(ForcePass))
	b.lastBad.Store(-int64(Window))
	return b
}

func epochOf(now int64) uint64 { return uint64(now) / uint64(Bucket) }

// Window counts of one Breaker.
type Counts struct {
	Accepts, Failures, Drops uint64
	// Working is w of the package doc: buckets since the last failure
	// that had accepts.
	Working int
}

// Requests is the formula's requests: every call tried in the window.
func (c Counts) Requests() uint64 { return c.Accepts + c.Failures + c.Drops }

// Counts returns the window's counts as of now.
func (b *Breaker) Counts(now int64) Counts {
	var c Counts
	cur := epochOf(now)
	working := true
	slot := int(cur % Buckets)
	for age := uint64(0); age < Buckets && age <= cur; age++ {
		e := cur - age
		w := b.buckets[slot].Load()
		if slot--; slot < 0 {
			slot = Buckets - 1
		}
		if w>>shiftEpoch != e&epochMask {
			continue // an older window's bucket, or never written
		}
		acc, fail := w>>shiftAcc&countMax, w>>shiftFail&countMax
		c.Accepts += acc
		c.Failures += fail
		c.Drops += w >> shiftDrop & countMax
		if fail > 0 {
			working = false
		}
		if working && acc > 0 {
			c.Working++
		}
	}
	return c
}

// DropProbability is the probability with which Allow drops a call at now:
// the formula times the working-bucket factor (the forced probe aside).
func (b *Breaker) DropProbability(now int64) float64 {
	return b.dropRatio(b.Counts(now))
}

func (b *Breaker) dropRatio(c Counts) float64 {
	req := float64(c.Requests())
	p := (req - b.protection - b.k*float64(c.Accepts)) / (req + 1)
	if p <= 0 {
		return 0
	}
	if c.Working >= b.recovery {
		return 0
	}
	return p * float64(b.recovery-c.Working) / float64(b.recovery)
}

// Allow decides whether to send a call at now: nil to send it (then report
// its end with Mark), ErrBreakerOpen to fail it at once. A dropped call is
// counted as a request of the window.
func (b *Breaker) Allow(now int64) error {
	if now-b.lastBad.Load() < int64(Window) {
		if p := b.dropRatio(b.Counts(now)); p > 0 {
			last := b.lastPass.Load()
			if now-last >= int64(ForcePass) && b.lastPass.CompareAndSwap(last, now) {
				return nil // the forced probe
			}
			if float64(b.rand()>>11)*(1.0/(1<<53)) < p {
				b.bad(now, shiftDrop)
				return ErrBreakerOpen
			}
		}
	}
	if last := b.lastPass.Load(); now-last >= passGranularity {
		b.lastPass.CompareAndSwap(last, now)
	}
	return nil
}

// Mark records the end of a call Allow let through.
func (b *Breaker) Mark(now int64, o Outcome) {
	if o == Failure {
		b.bad(now, shiftFail)
	} else {
		b.add(now, shiftAcc)
	}
}

// MarkSuccess records a call the endpoint took.
func (b *Breaker) MarkSuccess(now int64) { b.add(now, shiftAcc) }

// MarkFailure records a call the endpoint refused for overload or never
// answered.
func (b *Breaker) MarkFailure(now int64) { b.bad(now, shiftFail) }

// bad counts a failure or a drop and remembers when.
func (b *Breaker) bad(now int64, shift uint) {
	if last := b.lastBad.Load(); now > last {
		b.lastBad.CompareAndSwap(last, now)
	}
	b.add(now, shift)
}

func (b *Breaker) add(now int64, shift uint) {
	e := epochOf(now)
	slot := &b.buckets[e%Buckets]
	for {
		old := slot.Load()
		w := old
		if be := w >> shiftEpoch; be != e&epochMask {
			if (be-e)&epochMask < 1<<(epochBits-1) {
				// The slot already holds a newer epoch, so this mark is
				// older than the window: drop it rather than wipe newer
				// counts.
				return
			}
			w = (e & epochMask) << shiftEpoch
		}
		if w>>shift&countMax == countMax {
			w = halve(w)
		}
		w += 1 << shift
		if slot.CompareAndSwap(old, w) {
			return
		}
	}
}

// halve halves the three counts of a bucket word, keeping its epoch.
func halve(w uint64) uint64 {
	const counts = 1<<shiftEpoch - 1
	const lowBits = 1<<shiftAcc | 1<<shiftFail | 1<<shiftDrop // the bit each count loses
	c := w & counts
	return w&^counts | (c&^lowBits)>>1
}
