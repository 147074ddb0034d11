package runtime

import (
	"context"
	"net/netip"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
	"google.golang.org/protobuf/encoding/protowire"
)

// Request is a received request, viewed in place.
//
// Every slice it returns (Payload, Fields and the bytes they yield, Ext
// values, Caller) points into the receive buffer — the UMEM frame on the
// AF_XDP path — and is valid only until the handler returns; copy what
// must outlive it (AppendPayload). See the package doc for what happens
// to a handler that keeps them anyway, and WithPoisonedBuffers to catch
// one in tests.
type Request engine.Request

func (r *Request) e() *engine.Request { return (*engine.Request)(r) }

// ID is the request id chosen by the caller; the response echoes it.
func (r *Request) ID() uint64 { return r.e().ID() }

// MethodID is the FNV-1a hash of the full method name (proto.MethodID).
func (r *Request) MethodID() uint32 { return r.e().MethodID() }

// Method is the full method name as registered ("pkg.Service/Method");
// it does not allocate.
func (r *Request) Method() string { return r.e().Method() }

// Peer is the address the request came from (an IPv4 peer of a
// dual-stack socket as plain IPv4).
func (r *Request) Peer() netip.AddrPort { return r.e().Peer() }

// Identity is the authenticated identity (a SPIFFE ID) of the peer that
// sealed the request, "" when it came unsealed (WithSealer; a permissive
// server serves those). Unlike Caller it can be trusted: the sealer
// checked it in a handshake and every sealed frame proves it. It does not
// allocate.
func (r *Request) Identity() string { return r.e().Identity() }

// Sealed reports whether the request came sealed (and its reply goes out
// sealed).
func (r *Request) Sealed() bool { return r.e().Sealed() }

// Queue is the RX queue (AF_XDP) or loop index (kernel sockets) that
// received the request.
func (r *Request) Queue() int { return r.e().Queue() }

// Path is the data path that received the request.
func (r *Request) Path() Path { return Path(r.e().Path()) }

// Oneway reports whether the caller asked for no reply; a response
// written to a oneway request is discarded.
func (r *Request) Oneway() bool { return r.e().Oneway() }

// Payload returns the request message (protobuf wire-format fields),
// without the extension block, valid until the handler returns.
func (r *Request) Payload() []byte { return r.e().Payload() }

// AppendPayload appends a copy of the payload to dst and returns it: for
// a handler that must keep the bytes.
func (r *Request) AppendPayload(dst []byte) []byte { return r.e().AppendPayload(dst) }

// Fields iterates the payload's fields in place without allocating.
func (r *Request) Fields() proto.Fields { return r.e().Fields() }

// Arrival is when the request's loop received it: the loop reads the
// clock once per batch it takes from the kernel, after taking it, and the
// requests of the batch share that time, so the time a request waits
// behind the others of its batch counts in its latency, queueing delay
// and SERVICE_TIME. Use it with time.Since or Sub (monotonic); its wall
// clock is the process start's plus the monotonic time since, off by any
// step of the system clock since then (time.Now().Add(-time.Since(a))
// gives a wall time on today's clock).
func (r *Request) Arrival() time.Time { return r.e().Arrival() }

// Deadline is when the caller stops waiting: the arrival time plus the
// budget the caller's DEADLINE tag gave; ok is false when it gave none.
func (r *Request) Deadline() (deadline time.Time, ok bool) { return r.e().Deadline() }

// Trace is the caller's W3C trace context from the TRACE tag; ok is false
// (and the context zero) when the caller sent none.
func (r *Request) Trace() (tc proto.TraceContext, ok bool) { return r.e().Trace() }

// TraceState is the caller's W3C tracestate text (TRACESTATE), nil when
// absent; valid until the handler returns.
func (r *Request) TraceState() []byte { return r.e().TraceState() }

// Caller is the calling service's name from the CALLER tag, nil when
// absent: a label for telemetry and policy, not an authenticated identity.
// Valid until the handler returns.
func (r *Request) Caller() []byte { return r.e().Caller() }

// Attempt is 0 for the caller's first transmission of this request and n
// for its n-th retransmission (ATTEMPT; 0 when absent).
func (r *Request) Attempt() int { return r.e().Attempt() }

// Ext returns the value of an application tag (proto.ExtApp and up) in
// the request's extension block: the first one when it repeats (iterate
// proto.Frame.Ext for all). Valid until the handler returns.
func (r *Request) Ext(tag proto.ExtTag) (value []byte, ok bool) { return r.e().Ext(tag) }

// Context returns the request's context. For a blocking handler it ends
// at the request's deadline or when the server shuts down, whichever
// comes first (made on first use, so a handler that never calls Context
// pays nothing). A loop handler must not block, so it gets the server's
// lifetime context, which ends only at shutdown: it should look at
// Deadline instead.
func (r *Request) Context() context.Context { return r.e().Context() }

// SetContext makes ctx what Context returns for the rest of a blocking
// request, so a middleware can hand its handler a context with more in it
// (a tracing span). ctx should derive from Context: the request's deadline
// and the server's shutdown still end it. On a loop handler it does
// nothing (a loop request's Context is the server's lifetime context,
// shared by every request of the loop, and must stay allocation-free).
func (r *Request) SetContext(ctx context.Context) { r.e().SetContext(ctx) }

// Path names the data path that received a request.
type Path uint8

const (
	// PathXSK: an AF_XDP socket.
	PathXSK = Path(engine.PathXSK)
	// PathUDP: a kernel UDP socket (the io_uring backend, or the hybrid
	// path beside AF_XDP: callers in the server's own namespace,
	// fragments, queues without a socket).
	PathUDP = Path(engine.PathUDP)
	// PathTCP: a kernel TCP connection (WithTCP).
	PathTCP = Path(engine.PathTCP)
)

func (p Path) String() string { return engine.Path(p).String() }

// ErrTooLarge is returned by Response writes that would not fit in the
// reply; the reply then carries status TOO_LARGE instead of a truncated
// payload.
var ErrTooLarge = engine.ErrTooLarge

// Response is the reply being built. Its payload is written straight into
// the transmit buffer (the UMEM frame on the AF_XDP path); its capacity is
// what fits in one datagram on this path. A write that does not fit fails
// with ErrTooLarge and the reply becomes a TOO_LARGE error: a reply is
// never truncated.
type Response engine.Response

func (r *Response) e() *engine.Response { return (*engine.Response)(r) }

// Write appends raw payload bytes (already protobuf-encoded fields).
func (r *Response) Write(p []byte) (int, error) { return r.e().Write(p) }

// AppendVarint appends field num as a varint.
func (r *Response) AppendVarint(num protowire.Number, v uint64) error {
	return r.e().AppendVarint(num, v)
}

// AppendFixed32 appends field num as a fixed32.
func (r *Response) AppendFixed32(num protowire.Number, v uint32) error {
	return r.e().AppendFixed32(num, v)
}

// AppendFixed64 appends field num as a fixed64.
func (r *Response) AppendFixed64(num protowire.Number, v uint64) error {
	return r.e().AppendFixed64(num, v)
}

// AppendBytes appends field num as length-delimited bytes.
func (r *Response) AppendBytes(num protowire.Number, b []byte) error {
	return r.e().AppendBytes(num, b)
}

// AppendString appends field num as a length-delimited string.
func (r *Response) AppendString(num protowire.Number, s string) error {
	return r.e().AppendString(num, s)
}

// SetStatus sets the response status (default StatusOK); codes from
// proto.StatusApplication up are the application's.
func (r *Response) SetStatus(s proto.Status) { r.e().SetStatus(s) }

// SetRetryAfter asks the caller to wait d before retrying this server,
// carried in the reply's RETRY_AFTER tag when the caller speaks the
// extension block; meant for RATE_LIMITED and OVERLOADED answers.
func (r *Response) SetRetryAfter(d time.Duration) { r.e().SetRetryAfter(d) }

// Error replaces the payload with msg in field 1 and sets status s, the
// protocol's error response. A status of OK becomes INTERNAL: an error
// reply must say it failed.
func (r *Response) Error(s proto.Status, msg string) { r.e().Error(s, msg) }

// Status returns the status set so far.
func (r *Response) Status() proto.Status { return r.e().Status() }

// Len returns the payload length written so far.
func (r *Response) Len() int { return r.e().Len() }

// Cap returns how many payload bytes this response can hold in total.
func (r *Response) Cap() int { return r.e().Cap() }

// Reset discards the payload written so far, the status and any
// RETRY_AFTER.
func (r *Response) Reset() { r.e().Reset() }
