package runtime

import (
	"errors"
	"net/netip"

	"github.com/zerohop/zerohop/proto"
	"google.golang.org/protobuf/encoding/protowire"
)

// HandlerFunc serves one request. It runs on the event loop that received
// the request (or on a worker, for HandleBlocking) and must not keep req,
// resp or any slice obtained from them after it returns.
type HandlerFunc func(req *Request, resp *Response)

// Request is a received request, viewed in place.
//
// Every slice it returns (Payload, Fields and the bytes they yield) points
// into the receive buffer — the UMEM frame on the XSK backend — and is valid
// only until the handler returns; copy what must outlive it.
type Request struct {
	frame proto.Frame
	peer  netip.AddrPort
	queue int
}

// ID is the request id chosen by the caller; the response echoes it.
func (r *Request) ID() uint64 { return r.frame.RequestID() }

// MethodID is the FNV-1a hash of the full method name (proto.MethodID).
func (r *Request) MethodID() uint32 { return r.frame.MethodID() }

// Peer is the address the request came from (an IPv4 peer of a
// dual-stack socket as plain IPv4).
func (r *Request) Peer() netip.AddrPort {
	return netip.AddrPortFrom(r.peer.Addr().Unmap(), r.peer.Port())
}

// Queue is the RX queue (XSK) or loop index (uring) that received it.
func (r *Request) Queue() int { return r.queue }

// Oneway reports whether the caller asked for no reply; a response written
// to a oneway request is discarded.
func (r *Request) Oneway() bool { return r.frame.Oneway() }

// Payload returns the request payload (protobuf wire-format fields),
// valid until the handler returns.
func (r *Request) Payload() []byte { return r.frame.Payload() }

// Fields iterates the payload's fields in place without allocating.
func (r *Request) Fields() proto.Fields { return r.frame.Fields() }

// ErrTooLarge is returned by Response writes that would not fit in the
// reply; the reply then carries status TOO_LARGE instead of a truncated
// payload.
var ErrTooLarge = errors.New("runtime: response larger than the reply buffer")

// Response is the reply being built. Its payload is written straight into
// the transmit buffer (the UMEM frame on the XSK backend); its capacity is
// what fits in one datagram on this path. A write that does not fit fails
// with ErrTooLarge and the reply becomes a TOO_LARGE error: a reply is
// never truncated.
type Response struct {
	buf      []byte // header room, then the payload; cap is the limit
	status   proto.Status
	tooLarge bool
}

func (r *Response) reset(buf []byte) {
	r.buf = buf[:proto.HeaderLen]
	r.status = proto.StatusOK
	r.tooLarge = false
}

// room reports whether n more payload bytes fit, marking the response too
// large when they do not.
func (r *Response) room(n int) bool {
	if r.tooLarge || n > cap(r.buf)-len(r.buf) || len(r.buf)+n-proto.HeaderLen > proto.MaxPayload {
		r.tooLarge = true
		return false
	}
	return true
}

// Write appends raw payload bytes (already protobuf-encoded fields).
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

// SetStatus sets the response status (default StatusOK); codes from
// proto.StatusApplication up are the application's.
func (r *Response) SetStatus(s proto.Status) { r.status = s }

// Error replaces the payload with msg in field 1 and sets status s, the
// protocol's error response. A status of OK becomes INTERNAL: an error
// reply must say it failed.
func (r *Response) Error(s proto.Status, msg string) {
	if s == proto.StatusOK {
		s = proto.StatusInternal
	}
	r.buf = r.buf[:proto.HeaderLen]
	r.tooLarge = false
	r.status = s
	if !r.room(protowire.SizeTag(1) + protowire.SizeBytes(len(msg))) {
		// Keep as much of the message as fits rather than lose the status.
		r.tooLarge = false
		limit := cap(r.buf) - len(r.buf) - protowire.SizeTag(1) - protowire.SizeVarint(uint64(cap(r.buf)))
		if limit < 0 {
			limit = 0
		}
		if limit < len(msg) {
			msg = msg[:limit]
		}
	}
	r.buf = protowire.AppendTag(r.buf, 1, protowire.BytesType)
	r.buf = protowire.AppendString(r.buf, msg)
}

// Status returns the status set so far.
func (r *Response) Status() proto.Status { return r.status }

// Len returns the payload length written so far.
func (r *Response) Len() int { return len(r.buf) - proto.HeaderLen }

// Cap returns how many payload bytes this response can hold in total.
func (r *Response) Cap() int {
	c := cap(r.buf) - proto.HeaderLen
	if c > proto.MaxPayload {
		c = proto.MaxPayload
	}
	return c
}

// Reset discards the payload written so far and the status.
func (r *Response) Reset() {
	r.buf = r.buf[:proto.HeaderLen]
	r.status = proto.StatusOK
	r.tooLarge = false
}
