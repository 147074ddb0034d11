package proto

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Wire types a payload field can have. Groups (start/end group) are
// rejected: no current protobuf schema needs them on this path.
const (
	VarintType  = protowire.VarintType
	Fixed32Type = protowire.Fixed32Type
	Fixed64Type = protowire.Fixed64Type
	BytesType   = protowire.BytesType
)

// Field is one protobuf field read in place from a payload. Its value
// aliases the payload (never copied) and is valid as long as it.
type Field struct {
	// 32 bytes at most, so the compiler passes a Field in registers: a
	// wider struct is copied through memory and stalls on store forwarding
	// each time the iterator hands one out (a third of the iteration time).
	meta uint64 // offset << 32 | field number << 3 | wire type
	raw  []byte // the encoded value: varint bytes, 4 or 8 fixed bytes, or the bytes field's content
}

// Num returns the field number.
func (f Field) Num() protowire.Number { return protowire.Number(uint32(f.meta) >> 3) }

// Type returns the wire type.
func (f Field) Type() protowire.Type { return protowire.Type(f.meta & 7) }

// Offset returns where the field's tag starts in the payload.
func (f Field) Offset() int { return int(f.meta >> 32) }

// Uint64 returns a varint or fixed field as an unsigned integer (uint64,
// uint32, fixed64, fixed32, enum); 0 for a bytes field.
func (f Field) Uint64() uint64 {
	r := f.raw
	switch f.Type() {
	case VarintType:
		if len(r) == 1 {
			return uint64(r[0])
		}
		var v uint64
		for i, c := range r { // at most 10 bytes, checked by Next
			v |= uint64(c&0x7f) << (7 * i)
		}
		return v
	case Fixed32Type:
		return uint64(binary.LittleEndian.Uint32(r))
	case Fixed64Type:
		return binary.LittleEndian.Uint64(r)
	}
	return 0
}

// Int64 returns a varint or fixed64 field read as int64/sfixed64.
func (f Field) Int64() int64 { return int64(f.Uint64()) }

// Int32 returns a varint field read as int32 or a fixed32 field as sfixed32.
func (f Field) Int32() int32 { return int32(f.Uint64()) }

// Uint32 returns a varint field read as uint32 or a fixed32 field.
func (f Field) Uint32() uint32 { return uint32(f.Uint64()) }

// Sint64 returns a varint field read as zigzag-encoded sint64.
func (f Field) Sint64() int64 { return protowire.DecodeZigZag(f.Uint64()) }

// Sint32 returns a varint field read as zigzag-encoded sint32.
func (f Field) Sint32() int32 { return int32(protowire.DecodeZigZag(f.Uint64() & math.MaxUint32)) }

// Bool returns a varint field read as bool.
func (f Field) Bool() bool { return f.Uint64() != 0 }

// Float32 returns a fixed32 field read as float.
func (f Field) Float32() float32 { return math.Float32frombits(uint32(f.Uint64())) }

// Float64 returns a fixed64 field read as double.
func (f Field) Float64() float64 { return math.Float64frombits(f.Uint64()) }

// Bytes returns a bytes field (bytes, string, embedded message, packed
// repeated scalars) as a sub-slice of the payload; nil for other types.
func (f Field) Bytes() []byte {
	if f.Type() != BytesType {
		return nil
	}
	return f.raw
}

// Fields iterates over the protobuf fields of a payload in place:
//
//	it := proto.NewFields(payload)
//	for it.Next() {
//		f := it.Field()
//		…
//	}
//	if err := it.Err(); err != nil { … }
//
// It does not allocate on a well-formed payload.
type Fields struct {
	buf []byte
	off int
	cur Field
	err FieldError
}

// NewFields returns an iterator over the fields of payload.
func NewFields(payload []byte) Fields { return Fields{buf: payload} }

// Reset makes it iterate over payload from the start. It is NewFields
// without the struct copy, for loops that reuse one iterator.
func (it *Fields) Reset(payload []byte) {
	it.buf, it.off = payload, 0
	it.cur = Field{}
	it.err = FieldError{}
}

// Next reads the next field and reports whether there was one. It returns
// false at the end of the payload and at the first malformed field, after
// which Err says which.
//
// One-byte tags, lengths and varints (the common case) are decoded inline;
// longer varints go through protowire.ConsumeVarint.
func (it *Fields) Next() bool {
	b, off := it.buf, it.off
	if off >= len(b) {
		return false
	}
	tag, n := uint64(b[off]), 1
	if tag >= 0x80 {
		tag, n = protowire.ConsumeVarint(b[off:])
		if n < 0 {
			return it.fail(FieldBadTag)
		}
	}
	num := tag >> 3
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
		return it.fail(FieldBadTag)
	}
	start := off + n
	p := start
	switch protowire.Type(tag & 7) {
	case protowire.VarintType:
		// Find the end of the varint; Uint64 decodes it when asked. The
		// rules are protowire.ConsumeVarint's: at most 10 bytes, and the
		// 10th may only hold the top bit of a uint64.
		end := p
		for end < len(b) && end-p < 9 && b[end] >= 0x80 {
			end++
		}
		if end >= len(b) || b[end] >= 0x80 || end-p == 9 && b[end] > 1 {
			return it.fail(FieldTruncated)
		}
		p = end + 1
	case protowire.Fixed32Type:
		if len(b)-p < 4 {
			return it.fail(FieldTruncated)
		}
		p += 4
	case protowire.Fixed64Type:
		if len(b)-p < 8 {
			return it.fail(FieldTruncated)
		}
		p += 8
	case protowire.BytesType:
		size, m := uint64(0), 1
		if p < len(b) && b[p] < 0x80 {
			size = uint64(b[p])
		} else if size, m = protowire.ConsumeVarint(b[p:]); m < 0 {
			return it.fail(FieldTruncated)
		}
		p += m
		if size > uint64(len(b)-p) {
			return it.fail(FieldTruncated)
		}
		start = p
		p += int(size)
	case protowire.StartGroupType, protowire.EndGroupType:
		return it.fail(FieldGroup)
	default:
		return it.fail(FieldBadTag)
	}
	it.cur = Field{meta: uint64(off)<<32 | tag, raw: b[start:p:p]}
	it.off = p
	return true
}

// fail records a malformed field at the current offset and ends the
// iteration.
func (it *Fields) fail(reason FieldReason) bool {
	it.err = FieldError{Offset: it.off, Reason: reason}
	it.cur = Field{}
	it.buf = it.buf[:it.off:it.off]
	return false
}

// Field returns the field read by the last successful Next.
func (it *Fields) Field() Field { return it.cur }

// Err returns the malformed field that stopped the iteration as a
// *FieldError, or nil. Only this error path allocates.
func (it *Fields) Err() error {
	if it.err.Reason == 0 {
		return nil
	}
	e := it.err
	return &e
}

// Malformed is Err without the allocation: the error value and whether the
// iteration stopped on a malformed field.
func (it *Fields) Malformed() (FieldError, bool) { return it.err, it.err.Reason != 0 }

// ValidateFields reads every field of payload and returns the first
// malformed one as a *FieldError, or nil.
func ValidateFields(payload []byte) error {
	it := NewFields(payload)
	for it.Next() {
	}
	return it.Err()
}

// FieldReason says why a payload field could not be read.
type FieldReason uint8

const (
	// FieldBadTag: the tag is not a valid varint, has field number 0 or
	// above 2^29-1, or a wire type that does not exist.
	FieldBadTag FieldReason = 1 + iota
	// FieldGroup: a start- or end-group field; groups are rejected.
	FieldGroup
	// FieldTruncated: the value runs past the end of the payload (or a
	// varint is longer than 10 bytes or overflows).
	FieldTruncated
)

// FieldError is a malformed payload field: what is wrong and at which byte
// offset of the payload its tag starts.
type FieldError struct {
	Offset int
	Reason FieldReason
}

func (e *FieldError) Error() string {
	var what string
	switch e.Reason {
	case FieldBadTag:
		what = "invalid tag"
	case FieldGroup:
		what = "group field (groups are not supported)"
	case FieldTruncated:
		what = "value truncated or malformed"
	default:
		what = "unknown problem"
	}
	return "proto: payload field at offset " + itoa(uint64(e.Offset)) + ": " + what
}
