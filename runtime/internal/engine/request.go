package engine

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/zerohop/zerohop/proto"
	"google.golang.org/protobuf/encoding/protowire"
)

// Request is a received request, viewed in place. The runtime exposes it
// as runtime.Request (same layout, its own documented methods).
type Request struct {
	frame    proto.Frame
	peer     netip.AddrPort
	queue    int
	path     Path
	method   *Method
	arrival  int64 // Mono
	deadline int64 // Mono; 0: the caller set none
	admitted bool
	ident    Identity // who sealed it; zero when it came unsealed

	// ctx is made on the first Context call of a blocking handler and
	// cancelled when it returns; base is the server's lifetime context.
	base   context.Context
	ctx    context.Context
	cancel context.CancelFunc
}

// ID is the request id chosen by the caller.
func (r *Request) ID() uint64 { return r.frame.RequestID() }

// MethodID is the method id of the request.
func (r *Request) MethodID() uint32 { return r.frame.MethodID() }

// Method is the method's full name, as registered.
func (r *Request) Method() string {
	if r.method == nil {
		return ""
	}
	return r.method.Name
}

// Peer is the address the request came from, IPv4 unmapped.
func (r *Request) Peer() netip.AddrPort {
	return netip.AddrPortFrom(r.peer.Addr().Unmap(), r.peer.Port())
}

// Identity is the authenticated SPIFFE ID of the peer that sealed the
// request, "" for an unsealed one.
func (r *Request) Identity() string { return r.ident.ID }

// Sealed reports whether the request came sealed.
func (r *Request) Sealed() bool { return r.ident.Sealed() }

// Queue is the RX queue (or loop index) that received the request.
func (r *Request) Queue() int { return r.queue }

// Path is the data path that received the request.
func (r *Request) Path() Path { return r.path }

// Oneway reports whether the caller wants no reply.
func (r *Request) Oneway() bool { return r.frame.Oneway() }

// Payload returns the request message, aliasing the receive buffer.
func (r *Request) Payload() []byte { return r.frame.Payload() }

// AppendPayload appends a copy of the payload to dst.
func (r *Request) AppendPayload(dst []byte) []byte { return append(dst, r.frame.Payload()...) }

// Fields iterates the payload's fields in place.
func (r *Request) Fields() proto.Fields { return r.frame.Fields() }

// Frame is the whole request frame, aliasing the receive buffer.
func (r *Request) Frame() proto.Frame { return r.frame }

// Arrival is when the request's loop received it: read once per batch
// the loop takes from the kernel, after taking it (a batch shares one
// arrival time).
func (r *Request) Arrival() time.Time { return MonoTime(r.arrival) }

// Deadline is when the caller stops waiting, and whether it said.
func (r *Request) Deadline() (time.Time, bool) {
	if r.deadline == 0 {
		return time.Time{}, false
	}
	return MonoTime(r.deadline), true
}

// Trace is the caller's W3C trace context (zero and false when absent).
func (r *Request) Trace() (proto.TraceContext, bool) { return r.frame.Trace() }

// TraceState is the caller's W3C tracestate text, nil when absent.
func (r *Request) TraceState() []byte { return r.frame.TraceState() }

// Caller is the calling service's name, nil when absent.
func (r *Request) Caller() []byte { return r.frame.Caller() }

// Attempt is 0 for a first transmission, n for the n-th retransmission.
func (r *Request) Attempt() int {
	n, _ := r.frame.Attempt()
	return int(n)
}

// Ext returns the first value of tag in the request's extension block.
func (r *Request) Ext(tag proto.ExtTag) ([]byte, bool) { return r.frame.ExtValue(tag) }

// Admit marks the request admitted by an admission chain.
func (r *Request) Admit() { r.admitted = true }

// Context returns the request's context: on a worker, one that ends at
// the deadline or at shutdown, made on first use; on the loop, the
// server's lifetime context (no per-request allocation on the loop).
func (r *Request) Context() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	base := r.base
	if base == nil {
		base = context.Background()
	}
	if r.method == nil || !r.method.Blocking {
		return base
	}
	if r.deadline == 0 {
		r.ctx, r.cancel = context.WithCancel(base)
	} else {
		r.ctx, r.cancel = context.WithDeadline(base, MonoTime(r.deadline))
	}
	return r.ctx
}

// SetContext replaces what Context returns for the rest of a blocking
// request (ctx should derive from Context, whose cancellation still ends
// it). On the loop it does nothing: a loop request's context is the
// server's, shared by every request of the loop.
func (r *Request) SetContext(ctx context.Context) {
	if r.method == nil || !r.method.Blocking || ctx == nil {
		return
	}
	if r.ctx == nil {
		r.Context()
	}
	r.ctx = ctx
}

// done ends the request's context, if one was made.
func (r *Request) done() {
	if r.cancel != nil {
		r.cancel()
	}
	r.ctx, r.cancel = nil, nil
	r.frame = nil
}

// ErrTooLarge is returned by Response writes that would not fit.
var ErrTooLarge = errors.New("runtime: response larger than the reply buffer")

// Response is the reply being built, straight into the transmit buffer.
// buf[:off] is room for the header (and the extension block, written in
// front of the payload when the reply is sealed); the payload follows.
type Response struct {
	buf        []byte
	off        int
	status     proto.Status
	tooLarge   bool
	retryAfter time.Duration
}

// reset points the response at out, payload starting at off.
func (r *Response) reset(out []byte, off int) {
	r.buf = out[:off]
	r.off = off
	r.status = proto.StatusOK
	r.tooLarge = false
	r.retryAfter = 0
}

// room reports whether n more payload bytes fit, marking the response too
// large when they do not.
func (r *Response) room(n int) bool {
	if r.tooLarge || n > cap(r.buf)-len(r.buf) || len(r.buf)+n-r.off > proto.MaxPayload-maxReplyExt {
		r.tooLarge = true
		return false
	}
	return true
}

// Write appends raw payload bytes.
func (r *Response) Write(p []byte) (int, error) {
	if !r.room(len(p)) {
		return 0, ErrTooLarge
	}
	r.buf = append(r.buf, p...)
	return len(p), nil
}

// AppendVarint appends field num as a varint.
func (r *Response) AppendVarint(num protowire.Number, v uint64) error {
	if !r.room(protowire.SizeTag(num) + protowire.SizeVarint(v)) {
		return ErrTooLarge
	}
	r.buf = protowire.AppendTag(r.buf, num, protowire.VarintType)
	r.buf = protowire.AppendVarint(r.buf, v)
	return nil
}

// AppendFixed32 appends field num as a fixed32.
func (r *Response) AppendFixed32(num protowire.Number, v uint32) error {
	if !r.room(protowire.SizeTag(num) + 4) {
		return ErrTooLarge
	}
	r.buf = protowire.AppendTag(r.buf, num, protowire.Fixed32Type)
	r.buf = protowire.AppendFixed32(r.buf, v)
	return nil
}

// AppendFixed64 appends field num as a fixed64.
func (r *Response) AppendFixed64(num protowire.Number, v uint64) error {
	if !r.room(protowire.SizeTag(num) + 8) {
		return ErrTooLarge
	}
	r.buf = protowire.AppendTag(r.buf, num, protowire.Fixed64Type)
	r.buf = protowire.AppendFixed64(r.buf, v)
	return nil
}

// AppendBytes appends field num as length-delimited bytes.
func (r *Response) AppendBytes(num protowire.Number, b []byte) error {
	if !r.room(protowire.SizeTag(num) + protowire.SizeBytes(len(b))) {
		return ErrTooLarge
	}
	r.buf = protowire.AppendTag(r.buf, num, protowire.BytesType)
	r.buf = protowire.AppendBytes(r.buf, b)
	return nil
}

// AppendString appends field num as a length-delimited string.
func (r *Response) AppendString(num protowire.Number, s string) error {
	if !r.room(protowire.SizeTag(num) + protowire.SizeBytes(len(s))) {
		return ErrTooLarge
	}
	r.buf = protowire.AppendTag(r.buf, num, protowire.BytesType)
	r.buf = protowire.AppendString(r.buf, s)
	return nil
}

// SetStatus sets the status.
func (r *Response) SetStatus(s proto.Status) { r.status = s }

// SetRetryAfter asks the caller to wait d before retrying this server.
func (r *Response) SetRetryAfter(d time.Duration) { r.retryAfter = max(d, 0) }

// RetryAfter is what SetRetryAfter set.
func (r *Response) RetryAfter() time.Duration { return r.retryAfter }

// Error replaces the payload with msg in field 1 and sets status s (OK
// becomes INTERNAL), keeping as much of msg as fits.
func (r *Response) Error(s proto.Status, msg string) {
	if s == proto.StatusOK {
		s = proto.StatusInternal
	}
	r.buf = r.buf[:r.off]
	r.tooLarge = false
	r.status = s
	if !r.room(protowire.SizeTag(1) + protowire.SizeBytes(len(msg))) {
		r.tooLarge = false
		limit := cap(r.buf) - len(r.buf) - protowire.SizeTag(1) - protowire.SizeVarint(uint64(cap(r.buf)))
		msg = msg[:min(max(limit, 0), len(msg))]
	}
	r.buf = protowire.AppendTag(r.buf, 1, protowire.BytesType)
	r.buf = protowire.AppendString(r.buf, msg)
}

// Status returns the status set so far.
func (r *Response) Status() proto.Status { return r.status }

// Len returns the payload length written so far.
func (r *Response) Len() int { return len(r.buf) - r.off }

// Cap returns how many payload bytes the response can hold in total.
func (r *Response) Cap() int { return min(cap(r.buf)-r.off, proto.MaxPayload-maxReplyExt) }

// Reset discards the payload and the status.
func (r *Response) Reset() {
	r.buf = r.buf[:r.off]
	r.status = proto.StatusOK
	r.tooLarge = false
	r.retryAfter = 0
}
