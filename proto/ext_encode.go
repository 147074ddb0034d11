package proto

import (
	"encoding/binary"
	"time"
)

// MaxAppExt is how many application entries an ExtBuilder holds.
const MaxAppExt = 8

// MaxExtBlockLen is the largest block an ExtBuilder writes, ext_len
// included: every known tag at its largest and MaxAppExt application
// entries of 255 bytes, 2 + 7·2 + 549 + 8·257 = 2,621 bytes.
const MaxExtBlockLen = extLenSize + 7*extEntryHdr + 4 + TraceLen + 2*MaxExtValue + 4 + 4 + 1 + MaxAppExt*(extEntryHdr+MaxExtValue)

// ResponseHeadroom is the room a server leaves in front of a response
// payload so that SealExt can always place the header and a block holding
// SERVICE_TIME and RETRY_AFTER there: 24 + 2 + (2+4) + (2+4) bytes.
// Application entries need ExtBuilder.Len() − 14 bytes more.
const ResponseHeadroom = HeaderLen + extLenSize + 2*(extEntryHdr+4)

// Errors of ExtBuilder, reported by its Err and by every encoder given it.
var (
	// ErrExtValueTooLong: a TRACESTATE, CALLER or application value longer
	// than MaxExtValue (255) bytes.
	ErrExtValueTooLong = encodeError("proto: extension value longer than 255 bytes")
	// ErrExtTag: AddApp was given a tag below ExtApp (128); tags 0–127
	// belong to zerohop and have their own setters.
	ErrExtTag = encodeError("proto: extension tag below 128 is not an application tag")
	// ErrExtTooMany: more than MaxAppExt application entries.
	ErrExtTooMany = encodeError("proto: more than 8 application extension entries")
	// ErrHeadroom: SealExt found less room in front of the payload than the
	// header and the block take (HeaderLen + ExtBuilder.Len()).
	ErrHeadroom = encodeError("proto: encode: not enough room in front of the payload for the header and extension block")
	// ErrNotFrame: StripExt was given fewer than HeaderLen bytes.
	ErrNotFrame = encodeError("proto: encode: input is shorter than a frame header")
)

// ExtBuilder collects the entries of an extension block for the encoders
// (EncodeExt, EncodeRequestExt, EncodeErrorExt, SealExt). It is a fixed-size
// value: declare it on the stack or keep one per loop and Reset it; nothing
// allocates. Byte values (TRACESTATE, CALLER, application values) are
// referenced, not copied, until an encoder writes them, so they must not
// change in between.
//
// Setting a known tag twice keeps the last value. Entries are written known
// tags first in tag order, then application entries in the order added. A
// setter that cannot take its value records the first such error (Err),
// which every encoder given the builder then returns; the value is not
// recorded. The zero value is an empty builder, and an empty builder makes
// the encoders write a frame without a block and without FlagExt.
type ExtBuilder struct {
	set         uint8 // bit t: known tag t holds a value
	attempt     uint8
	nApp        uint8
	size        uint16 // the entries' bytes so far
	deadline    uint32
	serviceTime uint32
	retryAfter  uint32
	trace       TraceContext
	traceState  []byte
	caller      []byte
	app         [MaxAppExt]appEntry
	err         error
}

type appEntry struct {
	tag ExtTag
	val []byte
}

// Reset empties b for reuse. It clears only what was used, so a builder
// kept per loop costs less to reset than a new zero value.
func (b *ExtBuilder) Reset() {
	for i := range b.nApp {
		b.app[i] = appEntry{}
	}
	b.set, b.nApp, b.size, b.err = 0, 0, 0, nil
	b.traceState, b.caller = nil, nil
}

// add accounts for a known tag set to a value of n bytes, replacing its
// previous value if it had one.
func (b *ExtBuilder) add(t ExtTag, n, old int) {
	if b.set&(1<<t) != 0 {
		b.size -= uint16(extEntryHdr + old)
	}
	b.set |= 1 << t
	b.size += uint16(extEntryHdr + n)
}

// Err returns the first error a setter recorded, or nil.
func (b *ExtBuilder) Err() error { return b.err }

func (b *ExtBuilder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// SetDeadline sets DEADLINE to the budget d, in microseconds truncated
// toward zero (a budget is never stretched); d ≤ 0 writes 0 (expired) and
// budgets above 2^32−1 µs (71.6 minutes) are saturated.
func (b *ExtBuilder) SetDeadline(d time.Duration) {
	b.deadline = durationU32(d, time.Microsecond)
	b.add(ExtDeadline, 4, 4)
}

// SetTrace sets TRACE to tc, version 0. A context that is not IsValid is
// written as given; receivers treat it as absent.
func (b *ExtBuilder) SetTrace(tc TraceContext) {
	b.trace = tc
	b.add(ExtTrace, TraceLen, TraceLen)
}

// SetTraceState sets TRACESTATE; more than 255 bytes is ErrExtValueTooLong.
func (b *ExtBuilder) SetTraceState(s []byte) {
	if len(s) > MaxExtValue {
		b.fail(ErrExtValueTooLong)
		return
	}
	b.add(ExtTraceState, len(s), len(b.traceState))
	b.traceState = s
}

// SetCaller sets CALLER; more than 255 bytes is ErrExtValueTooLong.
func (b *ExtBuilder) SetCaller(name []byte) {
	if len(name) > MaxExtValue {
		b.fail(ErrExtValueTooLong)
		return
	}
	b.add(ExtCaller, len(name), len(b.caller))
	b.caller = name
}

// SetServiceTime sets SERVICE_TIME to d in nanoseconds, 0 for d ≤ 0 and
// saturated at 2^32−1 ns (4.29 s).
func (b *ExtBuilder) SetServiceTime(d time.Duration) {
	b.serviceTime = durationU32(d, time.Nanosecond)
	b.add(ExtServiceTime, 4, 4)
}

// SetRetryAfter sets RETRY_AFTER to d in microseconds, truncated, 0 for
// d ≤ 0 and saturated at 2^32−1 µs.
func (b *ExtBuilder) SetRetryAfter(d time.Duration) {
	b.retryAfter = durationU32(d, time.Microsecond)
	b.add(ExtRetryAfter, 4, 4)
}

// SetAttempt sets ATTEMPT.
func (b *ExtBuilder) SetAttempt(n uint8) {
	b.attempt = n
	b.add(ExtAttempt, 1, 1)
}

// AddApp adds an application entry; tags may repeat. A tag below ExtApp is
// ErrExtTag, a value over 255 bytes ErrExtValueTooLong, a ninth entry
// ErrExtTooMany.
func (b *ExtBuilder) AddApp(tag ExtTag, value []byte) {
	switch {
	case tag < ExtApp:
		b.fail(ErrExtTag)
	case len(value) > MaxExtValue:
		b.fail(ErrExtValueTooLong)
	case b.nApp == MaxAppExt:
		b.fail(ErrExtTooMany)
	default:
		b.app[b.nApp] = appEntry{tag, value}
		b.nApp++
		b.size += uint16(extEntryHdr + len(value))
	}
}

// Len returns the size of the block b describes, ext_len included: 0 for an
// empty builder, at most MaxExtBlockLen.
func (b *ExtBuilder) Len() int {
	if b == nil || b.size == 0 {
		return 0
	}
	return extLenSize + int(b.size)
}

// put writes the block into p, which holds exactly b.Len() bytes.
func (b *ExtBuilder) put(p []byte) {
	binary.BigEndian.PutUint16(p, b.size)
	i := extLenSize
	if b.set&(1<<ExtDeadline) != 0 {
		p[i], p[i+1] = byte(ExtDeadline), 4
		binary.BigEndian.PutUint32(p[i+2:], b.deadline)
		i += 6
	}
	if b.set&(1<<ExtTrace) != 0 {
		v := p[i : i+extEntryHdr+TraceLen]
		v[0], v[1], v[2] = byte(ExtTrace), TraceLen, 0
		copy(v[3:19], b.trace.TraceID[:])
		copy(v[19:27], b.trace.SpanID[:])
		v[27] = b.trace.Flags
		i += extEntryHdr + TraceLen
	}
	if b.set&(1<<ExtTraceState) != 0 {
		i = putEntry(p, i, ExtTraceState, b.traceState)
	}
	if b.set&(1<<ExtCaller) != 0 {
		i = putEntry(p, i, ExtCaller, b.caller)
	}
	if b.set&(1<<ExtServiceTime) != 0 {
		p[i], p[i+1] = byte(ExtServiceTime), 4
		binary.BigEndian.PutUint32(p[i+2:], b.serviceTime)
		i += 6
	}
	if b.set&(1<<ExtRetryAfter) != 0 {
		p[i], p[i+1] = byte(ExtRetryAfter), 4
		binary.BigEndian.PutUint32(p[i+2:], b.retryAfter)
		i += 6
	}
	if b.set&(1<<ExtAttempt) != 0 {
		p[i], p[i+1], p[i+2] = byte(ExtAttempt), 1, b.attempt
		i += 3
	}
	for k := range b.nApp {
		i = putEntry(p, i, b.app[k].tag, b.app[k].val)
	}
}

// putEntry writes one entry at p[i:] and returns where the next one starts.
func putEntry(p []byte, i int, t ExtTag, v []byte) int {
	p[i], p[i+1] = byte(t), byte(len(v))
	return i + extEntryHdr + copy(p[i+extEntryHdr:], v)
}

// blockLen returns x's block size, or x's error.
func blockLen(x *ExtBuilder) (int, error) {
	if x == nil {
		return 0, nil
	}
	if x.err != nil {
		return 0, x.err
	}
	return x.Len(), nil
}

// EncodeExt is Encode with the block of x between the header and the
// payload. It sets FlagExt in the header when it writes a block and clears
// it when x is nil or empty (then the frame is exactly Encode's). As with
// Encode, the payload may already lie anywhere in dst, and only sizes are
// checked: block and payload together must fit in MaxPayload.
func EncodeExt(dst []byte, h Header, x *ExtBuilder, payload []byte) (Frame, error) {
	n, err := blockLen(x)
	if err != nil {
		return nil, err
	}
	if n+len(payload) > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	size := HeaderLen + n + len(payload)
	if len(dst) < size {
		return nil, ErrBufferTooSmall
	}
	copy(dst[HeaderLen+n:size], payload) // first: payload may overlap the block's place
	h.Flags &^= FlagExt
	if n > 0 {
		x.put(dst[HeaderLen : HeaderLen+n])
		h.Flags |= FlagExt
	}
	return Seal(dst[:size], h)
}

// EncodeRequestExt writes a REQUEST carrying the block of x (the client's
// DEADLINE, TRACE, TRACESTATE, CALLER, ATTEMPT and application entries)
// and payload. methodID must not be 0 and flags may only hold FlagOneway;
// FlagExt is set by the encoder when x is not empty.
//
// Before a retransmission, Frame.SetDeadline and Frame.SetAttempt update
// the encoded frame in place; for a server that answered BAD_FRAME to the
// block, StripExt rewrites it without.
func EncodeRequestExt(dst []byte, requestID uint64, methodID uint32, flags Flags, x *ExtBuilder, payload []byte) (Frame, error) {
	if methodID == 0 || flags&^FlagOneway != 0 {
		return nil, ErrInvalidHeader
	}
	return EncodeExt(dst, Header{Kind: KindRequest, RequestID: requestID, MethodID: methodID, Flags: flags}, x, payload)
}

// EncodeErrorExt is EncodeError with the block of x: for instance
// RATE_LIMITED or OVERLOADED with SERVICE_TIME and RETRY_AFTER.
func EncodeErrorExt(dst []byte, requestID uint64, methodID uint32, status Status, x *ExtBuilder, msg string) (Frame, error) {
	n, err := blockLen(x)
	if err != nil {
		return nil, err
	}
	payloadLen := errorPayloadLen(len(msg))
	if n+payloadLen > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	size := HeaderLen + n + payloadLen
	if len(dst) < size {
		return nil, ErrBufferTooSmall
	}
	h := Header{Kind: KindResponse, RequestID: requestID, MethodID: methodID, Status: status}
	if n > 0 {
		x.put(dst[HeaderLen : HeaderLen+n])
		h.Flags = FlagExt
	}
	putErrorPayload(dst[HeaderLen+n:], msg)
	return Seal(dst[:size], h)
}

// SealExt finishes a frame whose payload the caller already wrote at
// buf[payloadOffset:] (a server's handler writing its response into a TX
// buffer, leaving ResponseHeadroom or more in front): it writes the header
// and the block of x directly in front of the payload, without moving it,
// and returns the frame, a sub-slice of buf starting where the header
// landed, at payloadOffset − HeaderLen − x.Len(). FlagExt is set or cleared
// as in EncodeExt; the rest of h is written as given.
//
// Less room than HeaderLen + x.Len() in front is ErrHeadroom; a block and
// payload over MaxPayload, ErrPayloadTooLarge.
func SealExt(buf []byte, payloadOffset int, h Header, x *ExtBuilder) (Frame, error) {
	n, err := blockLen(x)
	if err != nil {
		return nil, err
	}
	start, err := sealRoom(buf, payloadOffset, n)
	if err != nil {
		return nil, err
	}
	h.Flags &^= FlagExt
	if n > 0 {
		x.put(buf[start+HeaderLen : payloadOffset])
		h.Flags |= FlagExt
	}
	return Seal(buf[start:], h)
}

// serviceTimeBlock is the size of a block holding SERVICE_TIME alone.
const serviceTimeBlock = extLenSize + extEntryHdr + 4

// SealServiceTime is SealExt with a block holding SERVICE_TIME = d alone,
// byte for byte, written without an ExtBuilder: it is the block a server
// puts in front of nearly every reply to a request that spoke EXT, so it
// is on the request path.
func SealServiceTime(buf []byte, payloadOffset int, h Header, d time.Duration) (Frame, error) {
	start, err := sealRoom(buf, payloadOffset, serviceTimeBlock)
	if err != nil {
		return nil, err
	}
	p := buf[start+HeaderLen : payloadOffset]
	binary.BigEndian.PutUint16(p, serviceTimeBlock-extLenSize)
	p[2], p[3] = byte(ExtServiceTime), 4
	binary.BigEndian.PutUint32(p[4:], durationU32(d, time.Nanosecond))
	h.Flags |= FlagExt
	return Seal(buf[start:], h)
}

// sealRoom checks that a block of n bytes and the header fit in front of
// the payload at buf[payloadOffset:], and returns where the frame starts.
func sealRoom(buf []byte, payloadOffset, n int) (int, error) {
	if payloadOffset > len(buf) || payloadOffset < 0 {
		return 0, ErrBufferTooSmall
	}
	start := payloadOffset - n - HeaderLen
	if start < 0 {
		return 0, ErrHeadroom
	}
	if len(buf)-payloadOffset+n > MaxPayload {
		return 0, ErrPayloadTooLarge
	}
	return start, nil
}

// StripExt writes f again without its extension block and without FlagExt
// into dst, and returns the new frame, a prefix of dst. dst may be f's own
// buffer (dst[0] at f[0]): the header is read before anything is written,
// and the message moves down in place. A client uses it to resend a request
// to a server that answered BAD_FRAME to the block. A frame without a block
// is copied as it is.
func StripExt(dst []byte, f Frame) (Frame, error) {
	if len(f) < HeaderLen {
		return nil, ErrNotFrame
	}
	h := Header{Kind: f.Kind(), RequestID: f.RequestID(), MethodID: f.MethodID(), Status: f.Status(), Flags: f.Flags() &^ FlagExt}
	return Encode(dst, h, f.Payload())
}
