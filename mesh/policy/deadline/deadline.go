package deadline

import (
	"math"
	"time"
)

// None is the deadline of a call without one.
const None int64 = math.MaxInt64

// FromBudget returns the deadline of a request that arrived at arrival
// with a DEADLINE tag of budget microseconds. A budget of 0 gives arrival
// itself: already expired.
func FromBudget(arrival int64, budget uint32) int64 {
	return arrival + int64(budget)*int64(time.Microsecond)
}

// Accept reports whether a server should start work on a request whose
// deadline is deadline at now: only while the deadline is ahead.
func Accept(deadline, now int64) bool { return now < deadline }

// Remaining returns the time left before deadline (≤ 0 once it passed);
// for None it returns the largest Duration.
func Remaining(deadline, now int64) time.Duration {
	if deadline == None {
		return math.MaxInt64
	}
	return time.Duration(deadline - now)
}

// Budget returns the DEADLINE tag value for a call sent at now: whole
// microseconds left, rounded down and capped at the tag's 32 bits (71
// minutes). ok is false when less than a microsecond is left — the call
// must not be sent — and when the call has no deadline (send no tag).
func Budget(deadline, now int64) (budget uint32, ok bool) {
	if deadline == None {
		return 0, false
	}
	us := (deadline - now) / int64(time.Microsecond)
	if us < 1 {
		return 0, false
	}
	return uint32(min(us, math.MaxUint32)), true
}

// CanSend reports whether a call with deadline may be sent at now: it has
// no deadline, or at least a microsecond of budget left.
func CanSend(deadline, now int64) bool {
	if deadline == None {
		return true
	}
	_, ok := Budget(deadline, now)
	return ok
}

// Retry reports whether another attempt of a call fits in its budget at
// now, given the RTO the client would wait for that attempt's answer: at
// least one RTO must remain.
func Retry(deadline, now int64, rto time.Duration) bool {
	return Remaining(deadline, now) >= max(rto, time.Microsecond)
}

// AttemptTimeout is how long to wait for an attempt sent at now: the RTO,
// cut to what remains of the deadline.
func AttemptTimeout(deadline, now int64, rto time.Duration) time.Duration {
	return max(0, min(rto, Remaining(deadline, now)))
}
