package runtime

import (
	"context"
	"net/netip"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// Interceptor sees every attempt of a Client's calls: policies such as
// circuit breaking (mesh/policy) plug in here. Install them with
// WithInterceptors; they run in the order given.
//
// Before runs before an attempt is sent: on the caller's goroutine for a
// call's first attempt, on the client loop for retransmissions and
// failovers. An error refuses the attempt without sending it: the call
// then fails with that error (wrapped with the endpoint and method), or,
// on a DialService client, may fail over to another endpoint within its
// retry budget. After runs on the client loop once the attempt has ended:
// answered (with any status), timed out (also when the call's deadline
// ends it: Err is ErrNoReply), or failed on the socket. An attempt has no
// After when the call ends without a word from the endpoint for another
// reason: the caller's context was cancelled, or the Client or engine
// closed. Neither says anything about the endpoint; a policy that counts
// attempts in Before and outcomes in After sees those as neither.
//
// Both run on the request path: they must not block and should not
// allocate. Attempt and AttemptResult are only valid during the call.
type Interceptor interface {
	Before(a *Attempt) error
	After(a *Attempt, r *AttemptResult)
}

// Attempt is one transmission of a call to one endpoint.
type Attempt struct {
	// Service is the DialService name, "" for a Client from Dial.
	Service string
	// Method is the full method name, MethodID its id.
	Method   string
	MethodID uint32
	// Endpoint is the server the attempt goes to.
	Endpoint netip.AddrPort
	// N is 0 for the first transmission and n for the n-th retransmission
	// (what the ATTEMPT tag carries).
	N int
	// Deadline is the call's deadline (zero: none).
	Deadline time.Time
}

// AttemptResult is how an attempt ended.
type AttemptResult struct {
	// Answered: a reply came; Status is its status.
	Answered bool
	Status   proto.Status
	// Err is why no reply came (a timeout, a socket error such as
	// ECONNREFUSED from an ICMP port unreachable), nil when answered.
	Err error
	// RTT is from sending this attempt to its reply (0 when unanswered).
	RTT time.Duration
	// ServiceTime is the server's own time for the request (SERVICE_TIME),
	// 0 when the reply carried none.
	ServiceTime time.Duration
	// RetryAfter is the server's RETRY_AFTER hint, 0 when none.
	RetryAfter time.Duration
}

// CallTracer traces a Client's calls, once per call rather than per
// attempt (mesh/telemetry's Tracer is one; install it with
// WithCallTracer). StartCall runs on the caller's goroutine before the
// call is encoded: it returns the context the call carries on with
// (holding a client span when it started one) and the TRACE and
// TRACESTATE values every attempt sends — none when send is false.
// EndCall runs exactly once when the call ended, on the client loop (it
// must not block), with that context and how the call ended. Neither
// should allocate for a call that is not sampled; state must stay valid
// until EndCall. A CallTracer that only counts (per-method client
// metrics) returns ctx as it is and send false.
type CallTracer interface {
	StartCall(ctx context.Context, service, method string) (_ context.Context, tc proto.TraceContext, state []byte, send bool)
	EndCall(ctx context.Context, end *CallEnd)
}

// CallEnd is how a call ended, for CallTracer.EndCall; valid during the
// call only.
type CallEnd struct {
	// Service is the DialService name ("" for a Client from Dial), Method
	// the full method name.
	Service, Method string
	// Status is the answer's status; with a non-nil Err and StatusOK the
	// call got no answer (Err says why: ErrNoReply, a context's error,
	// ErrNoEndpoints, a socket error, an interceptor's refusal).
	Status proto.Status
	Err    error
	// Attempts is how many copies were sent; Duration is from the call's
	// start (its StartCall) to its end.
	Attempts int
	Duration time.Duration
}
