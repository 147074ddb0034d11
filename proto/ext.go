package proto

import (
	"encoding/binary"
	"time"
)

// Sizes in the extension block.
const (
	extLenSize  = 2 // the ext_len field
	extEntryHdr = 2 // tag and len of an entry

	// MaxExtValue is the largest value an entry can carry.
	MaxExtValue = 255
)

// ExtTag is the tag of an entry of the extension block.
//
// With FlagExt set, the payload starts with
//
//	ext_len u16   bytes of entries that follow
//	entries       tag u8, len u8, value (len bytes), back to back, exactly filling ext_len
//
// and the message follows the block. Parse accepts a block when:
//   - ext_len fits in length − 2 (ErrExtLen);
//   - the entries exactly fill ext_len (ErrExtEntries);
//   - no tag from 1 to 127 appears twice (ErrExtRepeated);
//   - each known tag (1–7) has its size (ErrExtSize): DEADLINE, SERVICE_TIME
//     and RETRY_AFTER 4 bytes, TRACE 26, ATTEMPT 1; TRACESTATE and CALLER
//     any size up to 255.
//
// The values of tags 8–127 (reserved for zerohop; still at most once each)
// and 128–255 (the application's; they may repeat) are skipped unread, so
// that new tags never break old peers. Tag 0 is assigned to nothing: it is skipped like an unknown tag,
// and the at-most-once rule, which covers 1–127, does not cover it. A known
// tag that belongs to the other direction (SERVICE_TIME in a request, say)
// is accepted as long as its size is right; the accessors read it like any
// other.
//
// A broken block makes a REQUEST BAD_FRAME and a RESPONSE a drop, like every
// other header rule.
type ExtTag uint8

// The tags of DESIGN.md's table. Values are big-endian.
const (
	// ExtDeadline (requests): u32 microseconds of budget left when the frame
	// was sent; 0 means already expired. Relative, so no clock sync is needed.
	ExtDeadline ExtTag = 1
	// ExtTrace (requests): 26 bytes of W3C binary trace context: version 0,
	// trace-id 16, parent span-id 8, trace-flags 1.
	ExtTrace ExtTag = 2
	// ExtTraceState (requests): up to 255 bytes of W3C tracestate text.
	ExtTraceState ExtTag = 3
	// ExtCaller (requests): up to 255 bytes naming the calling service, a
	// telemetry label and not an identity.
	ExtCaller ExtTag = 4
	// ExtServiceTime (responses): u32 nanoseconds from the request's arrival
	// at the server's loop to its reply being queued.
	ExtServiceTime ExtTag = 5
	// ExtRetryAfter (RATE_LIMITED and OVERLOADED responses): u32
	// microseconds before this caller should retry this server.
	ExtRetryAfter ExtTag = 6
	// ExtAttempt (requests): u8, 0 on the first transmission, n on the n-th
	// retransmission.
	ExtAttempt ExtTag = 7

	// maxKnownTag is the highest tag this package knows.
	maxKnownTag = ExtAttempt
	// ExtApp is the first application tag: 128–255 are opaque to zerohop,
	// may repeat, and are read by handlers. 8–127 are reserved for zerohop.
	ExtApp ExtTag = 128

	// TraceLen is the size of a TRACE value.
	TraceLen = 26
)

// knownSizes packs the value size each known tag must have, one byte per
// tag (byte t for tag t), so that the check is a shift instead of a table
// load; anySize marks the text tags, whose one-byte len cannot exceed their
// 255-byte limit.
const (
	anySize    = 0xff
	knownSizes = 4<<(8*ExtDeadline) | TraceLen<<(8*ExtTrace) | anySize<<(8*ExtTraceState) |
		anySize<<(8*ExtCaller) | 4<<(8*ExtServiceTime) | 4<<(8*ExtRetryAfter) | 1<<(8*ExtAttempt)
)

// knownSize returns the size tag t (1–7) must have.
func knownSize(t ExtTag) int { return int(uint8(uint64(knownSizes) >> (8 * (t & 7)))) }

var tagNames = [maxKnownTag + 1]string{
	ExtDeadline:    "DEADLINE",
	ExtTrace:       "TRACE",
	ExtTraceState:  "TRACESTATE",
	ExtCaller:      "CALLER",
	ExtServiceTime: "SERVICE_TIME",
	ExtRetryAfter:  "RETRY_AFTER",
	ExtAttempt:     "ATTEMPT",
}

// String returns the tag's name from DESIGN.md, "APP(n)" for application
// tags and "TAG(n)" for reserved ones.
func (t ExtTag) String() string {
	switch {
	case t >= 1 && t <= maxKnownTag:
		return tagNames[t]
	case t >= ExtApp:
		return "APP(" + itoa(uint64(t)) + ")"
	}
	return "TAG(" + itoa(uint64(t)) + ")"
}

// checkExt returns the reason the extension block at the start of body (the
// bytes after the header) breaks a rule, or 0. It is one pass over the
// entries with the tags seen so far in a 128-bit set.
func checkExt(body []byte) Error {
	if len(body) < extLenSize {
		return ErrExtLen
	}
	end := extLenSize + int(binary.BigEndian.Uint16(body))
	if end > len(body) {
		return ErrExtLen
	}
	var seenLow, seenHigh uint64 // tags 1–63 and 64–127
	for i := extLenSize; i < end; {
		if end-i < extEntryHdr {
			return ErrExtEntries
		}
		tag, size := body[i], int(body[i+1])
		i += extEntryHdr + size
		if i > end {
			return ErrExtEntries
		}
		switch {
		case tag == 0 || tag >= uint8(ExtApp):
			// Skipped, and free to repeat.
		case tag < 64:
			bit := uint64(1) << tag
			if seenLow&bit != 0 {
				return ErrExtRepeated
			}
			seenLow |= bit
			if tag <= uint8(maxKnownTag) {
				if want := knownSize(ExtTag(tag)); want != anySize && size != want {
					return ErrExtSize
				}
			}
		default:
			bit := uint64(1) << (tag - 64)
			if seenHigh&bit != 0 {
				return ErrExtRepeated
			}
			seenHigh |= bit
		}
	}
	return 0
}

// extEntries returns the entries of f's extension block, or nil when f has
// no block or (in a Frame that Parse did not check) the block does not fit.
func (f Frame) extEntries() []byte {
	if f.Flags()&FlagExt == 0 || len(f) < HeaderLen+extLenSize {
		return nil
	}
	end := HeaderLen + extLenSize + int(binary.BigEndian.Uint16(f[HeaderLen:]))
	if end > len(f) {
		return nil
	}
	return f[HeaderLen+extLenSize : end : end]
}

// messageOffset is where the message starts in a frame with FlagExt: after
// the block, or at the end of f when the block does not fit, so that an
// unchecked Frame cannot make Payload panic.
func (f Frame) messageOffset() int {
	if len(f) < HeaderLen+extLenSize {
		return len(f)
	}
	end := HeaderLen + extLenSize + int(binary.BigEndian.Uint16(f[HeaderLen:]))
	return min(end, len(f))
}

// ExtIter iterates over the entries of a frame's extension block in place:
//
//	it := f.Ext()
//	for it.Next() {
//		switch it.Tag() { … it.Value() … }
//	}
//
// It yields every entry in wire order, unknown and application tags
// included. On a Frame from Parse it reads the whole block; on an unchecked
// one it stops at the first entry that does not fit. It does not allocate.
type ExtIter struct {
	rest []byte
	tag  ExtTag
	val  []byte
}

// Ext returns an iterator over f's extension entries; it yields nothing when
// f has no block.
func (f Frame) Ext() ExtIter { return ExtIter{rest: f.extEntries()} }

// Next moves to the next entry and reports whether there was one.
func (it *ExtIter) Next() bool {
	e := it.rest
	if len(e) < extEntryHdr || int(e[1]) > len(e)-extEntryHdr {
		it.rest, it.tag, it.val = nil, 0, nil
		return false
	}
	end := extEntryHdr + int(e[1])
	it.tag, it.val = ExtTag(e[0]), e[extEntryHdr:end:end]
	it.rest = e[end:]
	return true
}

// Tag returns the tag of the current entry.
func (it *ExtIter) Tag() ExtTag { return it.tag }

// Value returns the value of the current entry, a sub-slice of the frame
// valid as long as it; its capacity ends with it, so appending to it copies.
func (it *ExtIter) Value() []byte { return it.val }

// ExtValue returns the value of the first entry with the given tag. Tags 1–127
// appear at most once in a parsed frame; application tags may repeat, and
// ExtIter reads all of them.
func (f Frame) ExtValue(tag ExtTag) ([]byte, bool) {
	e := f.extEntries()
	for len(e) >= extEntryHdr {
		end := extEntryHdr + int(e[1])
		if end > len(e) {
			break
		}
		if ExtTag(e[0]) == tag {
			return e[extEntryHdr:end:end], true
		}
		e = e[end:]
	}
	return nil, false
}

// extU32 reads a u32 entry; a wrong size (possible only in an unchecked
// Frame) reads as absent.
func (f Frame) extU32(tag ExtTag) (uint32, bool) {
	v, ok := f.ExtValue(tag)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// Deadline returns the DEADLINE entry: the budget the caller had left when
// it sent the frame (0 means it had expired), to the microsecond. The
// receiver adds it to the frame's arrival time.
func (f Frame) Deadline() (time.Duration, bool) {
	// ExtBuilder writes DEADLINE first: look there before scanning (the
	// server reads it for every request that spoke EXT).
	const first = HeaderLen + extLenSize
	if f.HasExt() && len(f) >= first+extEntryHdr+4 && binary.BigEndian.Uint16(f[HeaderLen:]) >= extEntryHdr+4 &&
		f[first] == byte(ExtDeadline) && f[first+1] == 4 {
		return time.Duration(binary.BigEndian.Uint32(f[first+extEntryHdr:])) * time.Microsecond, true
	}
	v, ok := f.extU32(ExtDeadline)
	return time.Duration(v) * time.Microsecond, ok
}

// ServiceTime returns the SERVICE_TIME entry of a response, to the
// nanosecond.
func (f Frame) ServiceTime() (time.Duration, bool) {
	v, ok := f.extU32(ExtServiceTime)
	return time.Duration(v), ok
}

// RetryAfter returns the RETRY_AFTER entry of a response, to the
// microsecond.
func (f Frame) RetryAfter() (time.Duration, bool) {
	v, ok := f.extU32(ExtRetryAfter)
	return time.Duration(v) * time.Microsecond, ok
}

// Attempt returns the ATTEMPT entry: 0 on a first transmission, n on the
// n-th retransmission.
func (f Frame) Attempt() (uint8, bool) {
	v, ok := f.ExtValue(ExtAttempt)
	if !ok || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

// Caller returns the CALLER entry (the calling service's name), or nil.
func (f Frame) Caller() []byte {
	v, _ := f.ExtValue(ExtCaller)
	return v
}

// TraceState returns the TRACESTATE entry (W3C tracestate text), or nil.
func (f Frame) TraceState() []byte {
	v, _ := f.ExtValue(ExtTraceState)
	return v
}

// TraceContext is a W3C trace context in its binary form: the trace-id, the
// caller's span-id (the parent of the receiver's span) and the trace-flags.
type TraceContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   uint8
}

// TraceFlagSampled is the W3C trace-flags bit that says the caller records
// the trace.
const TraceFlagSampled = 0x01

// IsValid reports whether both ids are non-zero; W3C Trace Context says an
// all-zero trace-id or parent-id makes the context invalid, to be ignored.
func (tc TraceContext) IsValid() bool {
	return tc.TraceID != [16]byte{} && tc.SpanID != [8]byte{}
}

// Sampled reports whether the sampled flag is set.
func (tc TraceContext) Sampled() bool { return tc.Flags&TraceFlagSampled != 0 }

// Trace returns the TRACE entry. It reports false, as if the entry were
// absent, when the entry's version byte is not 0 or the context is not
// valid (IsValid): W3C Trace Context has a receiver ignore a context it
// cannot read rather than fail the request, so a future version never makes
// an old server answer BAD_FRAME. Its size is still checked (26 bytes).
func (f Frame) Trace() (TraceContext, bool) {
	v, ok := f.ExtValue(ExtTrace)
	if !ok || len(v) != TraceLen || v[0] != 0 {
		return TraceContext{}, false
	}
	var tc TraceContext
	copy(tc.TraceID[:], v[1:17])
	copy(tc.SpanID[:], v[17:25])
	tc.Flags = v[25]
	if !tc.IsValid() {
		return TraceContext{}, false
	}
	return tc, true
}

// SetDeadline overwrites the DEADLINE value of an encoded frame in place
// (before a retransmission: the budget left now), with the rounding of
// ExtBuilder.SetDeadline, and reports whether the frame had one.
func (f Frame) SetDeadline(d time.Duration) bool {
	v, ok := f.ExtValue(ExtDeadline)
	if !ok || len(v) != 4 {
		return false
	}
	binary.BigEndian.PutUint32(v, durationU32(d, time.Microsecond))
	return true
}

// SetAttempt overwrites the ATTEMPT value of an encoded frame in place and
// reports whether the frame had one.
func (f Frame) SetAttempt(n uint8) bool {
	v, ok := f.ExtValue(ExtAttempt)
	if !ok || len(v) != 1 {
		return false
	}
	v[0] = n
	return true
}

// durationU32 converts d into a count of unit, truncated toward zero (a
// budget is never rounded up), 0 for negative d and saturated at 2^32−1.
func durationU32(d, unit time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	n := d / unit
	if n > 0xFFFFFFFF {
		return 0xFFFFFFFF
	}
	return uint32(n)
}
