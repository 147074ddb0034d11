package proto_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	gproto "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/proto/internal/testpb"
)

// FuzzParse: no input makes Parse panic; anything it accepts re-encodes to
// the same bytes and comes out of a Stream intact wherever the stream is
// cut; anything it wants answered gets a BAD_FRAME response no larger than
// the input.
func FuzzParse(f *testing.F) {
	buf := make([]byte, 512)
	enc := func(fr proto.Frame, err error) []byte {
		if err != nil {
			f.Fatal(err)
		}
		return append([]byte{}, fr...)
	}
	// Valid frames of every kind.
	f.Add(enc(proto.EncodeRequest(buf, 1, proto.MethodID("kv.Store/Get"), 0, []byte{0x08, 0x01})))
	f.Add(enc(proto.EncodeRequest(buf, 2, 7, proto.FlagOneway, nil)))
	f.Add(enc(proto.EncodeResponse(buf, 3, 7, proto.StatusApplication, []byte{0x12, 0x01, 'x'})))
	f.Add(enc(proto.EncodeError(buf, 4, 7, proto.StatusUnknownMethod, "no such method")))
	f.Add(enc(proto.EncodePing(buf, 5)))
	f.Add(enc(proto.EncodePong(buf, 5, proto.PongDraining)))
	// Answerable defects: length one too many, unknown kind, reserved flag.
	f.Add(header(proto.Magic, 1, 1, proto.KindRequest, 6, 7, 0, 0))
	f.Add(header(proto.Magic, 1, 0, 0xff, 6, 7, 0, 0))
	f.Add(header(proto.Magic, 1, 0, proto.KindRequest, 6, 7, 0, 0x0100))
	// Dropped: short, bad magic, version 2.
	f.Add([]byte("GWIR\x01"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: zerohop\r\n\r\n"))
	f.Add(header(proto.Magic, 2, 0, proto.KindRequest, 6, 7, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := proto.Parse(b)
		dst := make([]byte, len(b)+proto.HeaderLen)
		switch {
		case err == nil:
			if len(fr) != len(b) {
				t.Fatalf("Frame is %d bytes, input %d", len(fr), len(b))
			}
			// Encode writes flags as given, so the body (block included)
			// comes back byte for byte.
			re, err := proto.Encode(dst, proto.Header{Kind: fr.Kind(), RequestID: fr.RequestID(), MethodID: fr.MethodID(), Status: fr.Status(), Flags: fr.Flags()}, fr[proto.HeaderLen:])
			if err != nil {
				t.Fatalf("re-encoding an accepted frame: %v", err)
			}
			if !bytes.Equal(re, b) {
				t.Fatalf("re-encoded\n%x\nfrom\n%x", []byte(re), b)
			}
			checkStream(t, b)
		case errors.Is(err, proto.ErrBadFrame):
			if errors.Is(err, proto.ErrDrop) || len(fr) != proto.HeaderLen || fr.Kind() == proto.KindResponse || fr.Kind() == proto.KindPong {
				t.Fatalf("answerable %v with header %x", err, []byte(fr))
			}
			resp, err2 := proto.EncodeBadFrame(dst, b, err)
			if err2 != nil {
				t.Fatalf("EncodeBadFrame: %v", err2)
			}
			if len(resp) > len(b) {
				t.Fatalf("%d-byte answer to a %d-byte frame", len(resp), len(b))
			}
			g, err2 := proto.Parse(resp)
			if err2 != nil || g.Status() != proto.StatusBadFrame || g.RequestID() != fr.RequestID() {
				t.Fatalf("BAD_FRAME response %x does not parse right: %v", []byte(resp), err2)
			}
		case errors.Is(err, proto.ErrDrop):
			if fr != nil {
				t.Fatalf("drop error %v came with a frame", err)
			}
		default:
			t.Fatalf("error %v has no class", err)
		}
	})
}

// checkStream sends a valid frame twice through a Stream, cut at every
// point of the first copy, and expects both back.
func checkStream(t *testing.T, frame []byte) {
	two := append(append([]byte{}, frame...), frame...)
	for cut := 0; cut <= len(frame); cut += 1 + len(frame)/16 {
		s := proto.NewStream(make([]byte, len(frame)))
		got := 0
		for _, chunk := range [][]byte{two[:cut], two[cut:]} {
			if err := s.Feed(chunk); err != nil {
				t.Fatal(err)
			}
			for {
				f, err := s.Next()
				if err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				if f == nil {
					break
				}
				if !bytes.Equal(f, frame) {
					t.Fatalf("cut %d: stream gave %x", cut, []byte(f))
				}
				got++
			}
		}
		if got != 2 || s.Buffered() != 0 {
			t.Fatalf("cut %d: %d frames, %d bytes left", cut, got, s.Buffered())
		}
	}
}

// FuzzFields: no payload makes the iterator panic, and it agrees with
// protowire (the reference reader) on every field and on where a payload
// stops being well formed; a payload it reads to the end is one that
// proto.Unmarshal accepts too.
func FuzzFields(f *testing.F) {
	full, _ := gproto.Marshal(fullSample())
	f.Add(full)                                                                     // every wire type, nested message, field 2^29-1
	f.Add([]byte{})                                                                 // empty payload
	f.Add([]byte{0x08, 0x96, 0x01})                                                 // field 1 = 150
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c})                                           // a group: rejected
	f.Add([]byte{0x0a, 0x05, 'a'})                                                  // bytes running past the end
	f.Add([]byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}) // varint overflow
	f.Add([]byte{0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00})                               // field number above 2^29-1
	f.Fuzz(func(t *testing.T, payload []byte) {
		it := proto.NewFields(payload)
		b := payload
		off := 0
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			var m int
			if n >= 0 && num <= protowire.MaxValidNumber && typ != protowire.StartGroupType && typ != protowire.EndGroupType {
				m = protowire.ConsumeFieldValue(num, typ, b[n:])
			}
			if n < 0 || num > protowire.MaxValidNumber || typ == protowire.StartGroupType || typ == protowire.EndGroupType || m < 0 {
				if it.Next() {
					t.Fatalf("offset %d: iterator read a field protowire rejects", off)
				}
				fe, bad := it.Malformed()
				if !bad || fe.Offset != off {
					t.Fatalf("offset %d: malformed field reported as %+v, %v", off, fe, bad)
				}
				if (typ == protowire.StartGroupType || typ == protowire.EndGroupType) && n >= 0 && num <= protowire.MaxValidNumber && fe.Reason != proto.FieldGroup {
					t.Fatalf("offset %d: group reported as %d", off, fe.Reason)
				}
				return
			}
			if !it.Next() {
				t.Fatalf("offset %d: iterator stopped early: %v", off, it.Err())
			}
			fld := it.Field()
			if fld.Num() != num || fld.Type() != typ || fld.Offset() != off {
				t.Fatalf("offset %d: field %d/%d at %d, protowire says %d/%d", off, fld.Num(), fld.Type(), fld.Offset(), num, typ)
			}
			v := b[n : n+m]
			switch typ {
			case protowire.VarintType:
				want, _ := protowire.ConsumeVarint(v)
				if fld.Uint64() != want {
					t.Fatalf("offset %d: varint %d, want %d", off, fld.Uint64(), want)
				}
			case protowire.Fixed32Type:
				want, _ := protowire.ConsumeFixed32(v)
				if fld.Uint32() != want {
					t.Fatalf("offset %d: fixed32 %d, want %d", off, fld.Uint32(), want)
				}
			case protowire.Fixed64Type:
				want, _ := protowire.ConsumeFixed64(v)
				if fld.Uint64() != want {
					t.Fatalf("offset %d: fixed64 %d, want %d", off, fld.Uint64(), want)
				}
			case protowire.BytesType:
				want, _ := protowire.ConsumeBytes(v)
				if !bytes.Equal(fld.Bytes(), want) {
					t.Fatalf("offset %d: bytes differ", off)
				}
			}
			b = b[n+m:]
			off += n + m
		}
		if it.Next() || it.Err() != nil {
			t.Fatalf("iterator went past the end or failed: %v", it.Err())
		}
		if err := gproto.Unmarshal(payload, &emptypb.Empty{}); err != nil {
			t.Fatalf("proto.Unmarshal rejects a payload the iterator read: %v", err)
		}
	})
}

// FuzzMarshalFields: a Sample built from fuzzed values, marshalled by
// google.golang.org/protobuf, iterates to the same values.
func FuzzMarshalFields(f *testing.F) {
	f.Add(uint64(0), "", []byte(nil), uint32(0), int64(0), 0.0, int64(0), false, float32(0), int32(0), "", uint32(0), false)                                                                                   // all defaults: empty payload
	f.Add(uint64(math.MaxUint64), "zerohop ✓", []byte{0, 0xff}, uint32(math.MaxUint32), int64(math.MinInt64), math.NaN(), int64(-1), true, float32(math.Inf(1)), int32(math.MinInt32), "tag", uint32(1), true) // extremes and a child
	f.Add(uint64(150), "a", []byte("b"), uint32(1), int64(-1), -0.0, int64(1), true, float32(-0.5), int32(-1), "", uint32(1<<31), false)
	f.Fuzz(func(t *testing.T, id uint64, name string, body []byte, crc uint32, delta int64, ratio float64, stamp int64, flag bool, scale float32, offset int32, tag string, big uint32, nest bool) {
		msg := &testpb.Sample{
			Id: id, Name: name, Body: body, Crc: crc, Delta: delta, Ratio: ratio,
			Stamp: stamp, Flag: flag, Scale: scale, Offset: offset, BigNumber: big,
			Values: []int32{offset, int32(crc), int32(delta)},
		}
		if tag != "" {
			msg.Tags = []string{tag, name}
		}
		if nest {
			msg.Child = &testpb.Sample{Id: id ^ 1, Name: tag, Delta: -delta}
		}
		payload, err := gproto.Marshal(msg)
		if err != nil {
			return // strings that are not UTF-8: proto3 refuses to marshal them
		}
		got := decodeSample(t, payload)
		if !gproto.Equal(got, msg) {
			t.Fatalf("iterated %v\nmarshalled %v", got, msg)
		}
	})
}
