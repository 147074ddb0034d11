package proto_test

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

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
	// With an extension block: a request and a response.
	var x proto.ExtBuilder
	x.SetDeadline(time.Second)
	x.SetCaller([]byte("web"))
	x.AddApp(200, []byte{1})
	f.Add(enc(proto.EncodeRequestExt(buf, 6, 7, proto.FlagOneway, &x, []byte{0x08, 0x01})))
	x.Reset()
	x.SetServiceTime(time.Microsecond)
	f.Add(enc(proto.EncodeErrorExt(buf, 6, 7, proto.StatusOverloaded, &x, "busy")))
	// A block that breaks a rule: DEADLINE of 3 bytes.
	f.Add(append(header(proto.Magic, 1, 7, proto.KindRequest, 8, 7, 0, proto.FlagExt), 0, 5, 1, 3, 0, 0, 1))
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

// FuzzExt: a REQUEST or RESPONSE with FlagExt around an arbitrary body (the
// bytes after the header, ext_len first). Parse must agree with the
// reference decoder of ext_ref_test.go on the verdict, on the reason (one of
// the rules broken) and class, and on every entry, the message and each
// accessor; an accepted block must survive the reference encoder, the
// package's ExtBuilder, in-place patching, StripExt and a Stream. The seed
// corpus (testdata/fuzz/FuzzExt) names the rule each seed exercises.
func FuzzExt(f *testing.F) {
	f.Fuzz(func(t *testing.T, response bool, oneway bool, body []byte) {
		if len(body) > proto.MaxPayload {
			return
		}
		kind, flags := kindReq, flagExt
		if response {
			kind = kindResp
		}
		if oneway && !response {
			flags |= uint16(proto.FlagOneway)
		}
		frame := refFrame(kind, flags, 0x0102030405060708, 9, 0, body)
		checkAgainstRef(t, frame)
		ref := refDecode(body)
		if ref.bad != 0 {
			if !response {
				_, err := proto.Parse(frame)
				resp, err := proto.EncodeBadFrame(make([]byte, len(frame)), frame, err)
				if err != nil || len(resp) > len(frame) {
					t.Fatalf("BAD_FRAME answer %d bytes to %d: %v", len(resp), len(frame), err)
				}
			}
			return
		}
		if !bytes.Equal(refBody(ref.entries, ref.msg), body) {
			t.Fatalf("reference round trip differs")
		}
		checkBuilderRoundTrip(t, kind, flags, ref)
		checkPatch(t, frame, ref)
		stripped, err := proto.StripExt(make([]byte, len(frame)), frame)
		if want := refFrame(kind, flags&^flagExt, 0x0102030405060708, 9, 0, ref.msg); err != nil || !bytes.Equal(stripped, want) {
			t.Fatalf("StripExt\n%x\nwant\n%x (%v)", []byte(stripped), want, err)
		}
		if len(frame) <= 512 {
			checkStream(t, frame)
		}
	})
}

// checkBuilderRoundTrip rebuilds an accepted block with ExtBuilder when the
// builder can say it (no reserved or unassigned tags, TRACE of version 0, at
// most MaxAppExt application entries) and expects the reference encoding of
// the same entries in the builder's order: known tags ascending, then
// application entries as they came.
func checkBuilderRoundTrip(t *testing.T, kind byte, flags uint16, ref refDecoded) {
	t.Helper()
	var x proto.ExtBuilder
	var known, apps []refEntry
	for _, e := range ref.entries {
		switch {
		case e.tag >= 128:
			apps = append(apps, e)
			x.AddApp(proto.ExtTag(e.tag), e.val)
		case e.tag >= 1 && e.tag <= 7:
			known = append(known, e)
			v := e.val
			u := func() uint32 { return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3]) }
			switch e.tag {
			case 1:
				x.SetDeadline(time.Duration(u()) * time.Microsecond)
			case 2:
				if v[0] != 0 {
					return
				}
				var tc proto.TraceContext
				copy(tc.TraceID[:], v[1:17])
				copy(tc.SpanID[:], v[17:25])
				tc.Flags = v[25]
				x.SetTrace(tc)
			case 3:
				x.SetTraceState(v)
			case 4:
				x.SetCaller(v)
			case 5:
				x.SetServiceTime(time.Duration(u()))
			case 6:
				x.SetRetryAfter(time.Duration(u()) * time.Microsecond)
			case 7:
				x.SetAttempt(v[0])
			}
		default:
			return
		}
	}
	if len(apps) > proto.MaxAppExt || len(ref.entries) == 0 {
		return
	}
	slices.SortStableFunc(known, func(a, b refEntry) int { return int(a.tag) - int(b.tag) })
	h := proto.Header{Kind: proto.Kind(kind), RequestID: 0x0102030405060708, MethodID: 9, Flags: proto.Flags(flags)}
	got, err := proto.EncodeExt(make([]byte, proto.MaxFrameLen), h, &x, ref.msg)
	if err != nil {
		t.Fatalf("builder: %v", err)
	}
	want := refFrame(kind, flags, 0x0102030405060708, 9, 0, refBody(append(known, apps...), ref.msg))
	if !bytes.Equal(got, want) {
		t.Fatalf("builder writes\n%x\nreference\n%x", []byte(got), want)
	}
}

// checkPatch overwrites DEADLINE and ATTEMPT in a copy of an accepted frame
// and expects exactly those values changed, and only when present.
func checkPatch(t *testing.T, frame []byte, ref refDecoded) {
	t.Helper()
	f := proto.Frame(append([]byte{}, frame...))
	_, hasDeadline := ref.find(1)
	_, hasAttempt := ref.find(7)
	if f.SetDeadline(1234*time.Microsecond) != hasDeadline || f.SetAttempt(99) != hasAttempt {
		t.Fatalf("patch reports DEADLINE %v ATTEMPT %v wrongly", hasDeadline, hasAttempt)
	}
	var entries []refEntry
	for _, e := range ref.entries {
		switch e.tag {
		case 1:
			e.val = u32be(1234)
		case 7:
			e.val = []byte{99}
		}
		entries = append(entries, e)
	}
	want := append(append([]byte{}, frame[:proto.HeaderLen]...), refBody(entries, ref.msg)...)
	if !bytes.Equal(f, want) {
		t.Fatalf("patched\n%x\nwant\n%x", []byte(f), want)
	}
}

// FuzzStream: an arbitrary byte stream cut into arbitrary chunks (cuts: one
// chunk length per byte) through a Stream whose buffer holds 24 + bufSize%1024
// bytes gives exactly what Parse gives on the same frames, located by the
// length field: the same frames or header views and errors in the same
// order, the same sticky error where sync is lost or a frame is too large,
// and the same number of bytes left over, whatever the cuts. The seed corpus
// (testdata/fuzz/FuzzStream) names what each seed exercises.
func FuzzStream(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, cuts []byte, bufSize uint16) {
		bufLen := proto.HeaderLen + int(bufSize)%1024
		want, rest := refStream(data, bufLen)
		got, left := runStream(t, data, cuts, bufLen)
		compareEvents(t, "cut", got, want, left, rest)
		got, left = runStream(t, data, nil, bufLen)
		compareEvents(t, "whole", got, want, left, rest)
	})
}

// streamEvent is one non-empty answer of Stream.Next.
type streamEvent struct {
	frame []byte
	err   error
}

// stickyErr reports the Stream errors that end a stream.
func stickyErr(err error) bool {
	return err == proto.ErrMagic || err == proto.ErrVersion || err == proto.ErrFrameTooLarge
}

// refStream splits data by the header rules of DESIGN.md and Parses each
// frame. rest is the size of the incomplete frame at the end, -1 after a
// sticky error.
func refStream(data []byte, bufLen int) (events []streamEvent, rest int) {
	pos := 0
	for len(data)-pos >= proto.HeaderLen {
		h := data[pos:]
		switch {
		case string(h[:4]) != "GWIR":
			return append(events, streamEvent{nil, proto.ErrMagic}), -1
		case h[4] != 1:
			return append(events, streamEvent{nil, proto.ErrVersion}), -1
		}
		size := proto.HeaderLen + (int(h[5])<<8 | int(h[6]))
		if size > bufLen {
			return append(events, streamEvent{h[:proto.HeaderLen], proto.ErrFrameTooLarge}), -1
		}
		if len(data)-pos < size {
			break
		}
		fr, err := proto.Parse(data[pos : pos+size])
		events = append(events, streamEvent{fr, err})
		pos += size
	}
	return events, len(data) - pos
}

// runStream feeds data to a Stream in chunks of 1+cuts[i] bytes (the rest
// in one chunk once cuts run out) and collects copies of what Next returns.
func runStream(t *testing.T, data, cuts []byte, bufLen int) (events []streamEvent, left int) {
	s := proto.NewStream(make([]byte, bufLen))
	for len(data) > 0 {
		n := len(data)
		if len(cuts) > 0 {
			n = min(n, 1+int(cuts[0]))
			cuts = cuts[1:]
		}
		chunk := append([]byte{}, data[:n]...) // a buffer of its own, spoilt after use
		data = data[n:]
		if err := s.Feed(chunk); err != nil {
			t.Fatalf("Feed: %v", err)
		}
		for {
			fr, err := s.Next()
			if fr == nil && err == nil {
				break
			}
			events = append(events, streamEvent{append([]byte(nil), fr...), err})
			if stickyErr(err) {
				if fr2, err2 := s.Next(); fr2 != nil || err2 != err {
					t.Fatalf("sticky %v came back as %x, %v", err, []byte(fr2), err2)
				}
				return events, -1
			}
		}
		for i := range chunk {
			chunk[i] = 0xEE
		}
	}
	return events, s.Buffered()
}

func compareEvents(t *testing.T, pass string, got, want []streamEvent, left, rest int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: stream gave %d answers, Parse %d", pass, len(got), len(want))
	}
	for i := range got {
		if got[i].err != want[i].err || !bytes.Equal(got[i].frame, want[i].frame) || (got[i].frame == nil) != (want[i].frame == nil) {
			t.Fatalf("%s: answer %d: stream %x %v, Parse %x %v", pass, i, got[i].frame, got[i].err, want[i].frame, want[i].err)
		}
	}
	if left != rest {
		t.Fatalf("%s: %d bytes left in the stream, want %d", pass, left, rest)
	}
}
