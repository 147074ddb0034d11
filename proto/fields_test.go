package proto_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	gproto "google.golang.org/protobuf/proto"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/proto/internal/testpb"
)

// decodeSample rebuilds a Sample from a payload with proto.Fields only, the
// way a handler would read a request. Comparing it with the message that
// google.golang.org/protobuf marshalled checks the iterator against the
// reference encoder.
func decodeSample(t testing.TB, payload []byte) *testpb.Sample {
	t.Helper()
	s := &testpb.Sample{}
	it := proto.NewFields(payload)
	for it.Next() {
		f := it.Field()
		switch f.Num() {
		case 1:
			s.Id = f.Uint64()
		case 2:
			s.Name = string(f.Bytes())
		case 3:
			s.Body = append([]byte{}, f.Bytes()...)
		case 4:
			s.Crc = f.Uint32()
		case 5:
			s.Delta = f.Sint64()
		case 6:
			s.Ratio = f.Float64()
		case 7:
			if f.Type() == proto.VarintType { // unpacked element
				s.Values = append(s.Values, f.Int32())
				continue
			}
			b := f.Bytes()
			for len(b) > 0 {
				v, n := protowire.ConsumeVarint(b)
				if n < 0 {
					t.Fatalf("packed field 7 malformed")
				}
				s.Values = append(s.Values, int32(v))
				b = b[n:]
			}
		case 8:
			s.Child = decodeSample(t, f.Bytes())
		case 9:
			s.Stamp = f.Int64()
		case 10:
			s.Flag = f.Bool()
		case 11:
			s.Scale = f.Float32()
		case 12:
			s.Offset = f.Int32()
		case 13:
			s.Tags = append(s.Tags, string(f.Bytes()))
		case 536870911:
			s.BigNumber = f.Uint32()
		default:
			t.Fatalf("unexpected field %d", f.Num())
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterating a marshalled Sample: %v", err)
	}
	return s
}

func fullSample() *testpb.Sample {
	return &testpb.Sample{
		Id:        math.MaxUint64,
		Name:      "zerohop ✓",
		Body:      []byte{0, 1, 2, 0xff},
		Crc:       0xdeadbeef,
		Delta:     -123456789,
		Ratio:     math.Pi,
		Values:    []int32{1, -1, math.MaxInt32, math.MinInt32, 0},
		Child:     &testpb.Sample{Id: 7, Tags: []string{"in", "child"}},
		Stamp:     -1,
		Flag:      true,
		Scale:     float32(math.Inf(-1)),
		Offset:    -2,
		Tags:      []string{"", "a", "bc"},
		BigNumber: math.MaxUint32,
	}
}

func TestFieldsMatchMarshal(t *testing.T) {
	for _, msg := range []*testpb.Sample{{}, {Id: 1}, fullSample()} {
		b, err := gproto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeSample(t, b)
		if !gproto.Equal(got, msg) {
			t.Errorf("decoded %v, want %v", got, msg)
		}
	}
}

func TestFieldsMalformed(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		offset  int
		reason  proto.FieldReason
		fields  int // fields read before the bad one
	}{
		{"truncated tag", []byte{0x08, 0x01, 0x80}, 2, proto.FieldBadTag, 1},
		{"field number 0", []byte{0x00, 0x01}, 0, proto.FieldBadTag, 0},
		{"wire type 6", []byte{0x08, 0x01, 0x0e}, 2, proto.FieldBadTag, 1},
		{"field number too big", protowire.AppendTag(nil, protowire.MaxValidNumber+1, protowire.VarintType), 0, proto.FieldBadTag, 0},
		{"start group", []byte{0x08, 0x01, 0x0b, 0x0c}, 2, proto.FieldGroup, 1},
		{"end group", []byte{0x0c}, 0, proto.FieldGroup, 0},
		{"varint cut", []byte{0x08, 0xff}, 0, proto.FieldTruncated, 0},
		{"varint 11 bytes", append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10)...), 0, proto.FieldTruncated, 0},
		{"fixed32 cut", []byte{0x08, 1, 0x15, 1, 2, 3}, 2, proto.FieldTruncated, 1},
		{"fixed64 cut", []byte{0x09, 1, 2, 3, 4, 5, 6, 7}, 0, proto.FieldTruncated, 0},
		{"bytes longer than payload", []byte{0x0a, 0x05, 'a', 'b'}, 0, proto.FieldTruncated, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := proto.NewFields(tt.payload)
			n := 0
			for it.Next() {
				n++
			}
			if n != tt.fields {
				t.Errorf("read %d fields before the error, want %d", n, tt.fields)
			}
			err := it.Err()
			var fe *proto.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Err() = %v, want a *FieldError", err)
			}
			if fe.Offset != tt.offset || fe.Reason != tt.reason {
				t.Errorf("FieldError{Offset %d, Reason %d}, want {%d, %d}: %v", fe.Offset, fe.Reason, tt.offset, tt.reason, err)
			}
			if it.Next() {
				t.Error("Next went on after an error")
			}
			if err := proto.ValidateFields(tt.payload); err == nil {
				t.Error("ValidateFields accepted it")
			}
		})
	}
}

func TestFieldAccessors(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, protowire.EncodeZigZag(-5))
	b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, math.Float32bits(1.5))
	b = protowire.AppendTag(b, 3, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(-2.25))
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(protowire.EncodeZigZag(-7)))
	it := proto.NewFields(b)
	var got []proto.Field
	for it.Next() {
		got = append(got, it.Field())
	}
	if it.Err() != nil || len(got) != 4 {
		t.Fatalf("%d fields, %v", len(got), it.Err())
	}
	if got[0].Sint64() != -5 || got[1].Float32() != 1.5 || got[2].Float64() != -2.25 || got[3].Sint32() != -7 {
		t.Errorf("values %d %v %v %d", got[0].Sint64(), got[1].Float32(), got[2].Float64(), got[3].Sint32())
	}
	if got[1].Offset() != 2 || got[1].Num() != 2 || got[1].Type() != proto.Fixed32Type {
		t.Errorf("field 2 at %d: %+v", got[1].Offset(), got[1])
	}
	if got[0].Bytes() != nil {
		t.Error("Bytes of a varint field is not nil")
	}
}
