package proto

import (
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

// Field is one protobuf field read in place from a payload. For BytesType
// the value aliases the payload (never copied) and is valid as long as it.
type Field struct {
	// Num is the field number, Type its wire type.
	Num  protowire.Number
	Type protowire.Type
	// Offset is where the field's tag starts in the payload.
	Offset int

	scalar uint64 // VarintType, Fixed32Type, Fixed64Type
	bytes  []byte // BytesType
}

// Uint64 returns a varint or fixed field as an unsigned integer (uint64,
// uint32, fixed64, fixed32, enum); 0 for a bytes field.
func (f Field) Uint64() uint64 { return f.scalar }

// Int64 returns a varint or fixed64 field read as int64/sfixed64.
func (f Field) Int64() int64 { return int64(f.scalar) }

// Int32 returns a varint field read as int32 or a fixed32 field as sfixed32.
func (f Field) Int32() int32 { return int32(f.scalar) }

// Uint32 returns a varint field read as uint32 or a fixed32 field.
func (f Field) Uint32() uint32 { return uint32(f.scalar) }

// Sint64 returns a varint field read as zigzag-encoded sint64.
func (f Field) Sint64() int64 { return protowire.DecodeZigZag(f.scalar) }

// Sint32 returns a varint field read as zigzag-encoded sint32.
func (f Field) Sint32() int32 { return int32(protowire.DecodeZigZag(f.scalar & math.MaxUint32)) }

// Bool returns a varint field read as bool.
func (f Field) Bool() bool { return f.scalar != 0 }

// Float32 returns a fixed32 field read as float.
func (f Field) Float32() float32 { return math.Float32frombits(uint32(f.scalar)) }

// Float64 returns a fixed64 field read as double.
func (f Field) Float64() float64 { return math.Float64frombits(f.scalar) }

// Bytes returns a bytes field (bytes, string, embedded message, packed
// repeated scalars) as a sub-slice of the payload; nil for other types.
func (f Field) Bytes() []byte { return f.bytes }

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

// Next reads the next field and reports whether there was one. It returns
// false at the end of the payload and at the first malformed field, after
// which Err says which.
func (it *Fields) Next() bool {
	if it.off >= len(it.buf) || it.err.Reason != 0 {
		return false
	}
	b := it.buf[it.off:]
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num > protowire.MaxValidNumber {
		return it.fail(FieldBadTag)
	}
	f := Field{Num: num, Type: typ, Offset: it.off}
	v := b[n:]
	var m int
	switch typ {
	case protowire.VarintType:
		f.scalar, m = protowire.ConsumeVarint(v)
	case protowire.Fixed32Type:
		var x uint32
		x, m = protowire.ConsumeFixed32(v)
		f.scalar = uint64(x)
	case protowire.Fixed64Type:
		f.scalar, m = protowire.ConsumeFixed64(v)
	case protowire.BytesType:
		f.bytes, m = protowire.ConsumeBytes(v)
	case protowire.StartGroupType, protowire.EndGroupType:
		return it.fail(FieldGroup)
	default:
		return it.fail(FieldBadTag)
	}
	if m < 0 {
		return it.fail(FieldTruncated)
	}
	it.off += n + m
	it.cur = f
	return true
}

func (it *Fields) fail(reason FieldReason) bool {
	it.err = FieldError{Offset: it.off, Reason: reason}
	it.cur = Field{}
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
