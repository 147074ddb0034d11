// Package deadline holds the deadline rules of both sides of a call, as
// pure functions of monotonic nanoseconds, so the runtime's middleware and
// the client engine apply one definition.
//
// A deadline is an absolute monotonic time in nanoseconds; None (the
// largest int64) means the call has none. On the wire it travels as the
// DEADLINE tag: the microseconds of budget left when the frame was sent,
// relative so that no clocks need agree, 0 meaning already expired.
//
// Server: a request's deadline is its arrival on the loop plus the tag's
// budget (FromBudget); work whose deadline has passed is refused with
// DEADLINE_EXCEEDED (Accept), and a blocking handler's context ends at it.
// The time the frame spent in flight is not known and not subtracted: the
// server may run a call a network latency past the client's deadline,
// never before it.
//
// Client: a call whose deadline has passed is never sent (Budget reports
// !ok), and the tag carries the budget rounded down, so the server never
// sees more time than the client has. A retransmission is spent only when
// it fits: when at least one RTO remains (Retry), because the client will
// wait one RTO for the attempt's answer before it retries again or gives
// up, and an attempt that cannot be answered within the deadline only adds
// load to a server that may already be the reason for the retry. Each
// attempt's timer is the smaller of the RTO and what remains
// (AttemptTimeout).
package deadline
