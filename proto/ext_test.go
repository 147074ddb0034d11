package proto_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

const (
	kindReq  = byte(proto.KindRequest)
	kindResp = byte(proto.KindResponse)
	flagExt  = uint16(proto.FlagExt)
)

func u32be(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// sampleTrace is a valid version-0 TRACE value, sampled.
func sampleTrace() []byte {
	v := []byte{0}
	for i := range 16 {
		v = append(v, byte(0xa0+i))
	}
	for i := range 8 {
		v = append(v, byte(0xb0+i))
	}
	return append(v, 0x01)
}

// reasonFor maps the reference's violation bits to the package's reasons.
var reasonFor = map[int]proto.Error{
	refBadLen:    proto.ErrExtLen,
	refBadFill:   proto.ErrExtEntries,
	refBadRepeat: proto.ErrExtRepeated,
	refBadSize:   proto.ErrExtSize,
}

// checkAgainstRef parses frame (a header the reference wrote, valid apart
// from its block) and holds the result to the reference decoder: same
// verdict, a reason among the rules broken, the class its kind wants, and on
// success the same entries, message and accessor values.
func checkAgainstRef(t *testing.T, frame []byte) {
	t.Helper()
	body := frame[proto.HeaderLen:]
	ref := refDecode(body)
	isReply := frame[7] == kindResp
	f, err := proto.Parse(frame)
	if ref.bad != 0 {
		if err == nil {
			t.Fatalf("Parse accepted a block the reference rejects (%b): %x", ref.bad, body)
		}
		var pe proto.Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v is not a proto.Error", err)
		}
		matched := false
		for bit, reason := range reasonFor {
			if ref.bad&bit != 0 && errors.Is(err, reason) {
				matched = true
			}
		}
		if !matched {
			t.Fatalf("Parse says %v, the reference finds violations %b in %x", err, ref.bad, body)
		}
		if isReply {
			if !errors.Is(err, proto.ErrDrop) || errors.Is(err, proto.ErrBadFrame) || f != nil {
				t.Fatalf("broken RESPONSE block: %v with frame %x, want a drop", err, []byte(f))
			}
		} else if !errors.Is(err, proto.ErrBadFrame) || len(f) != proto.HeaderLen || f.RequestID() != proto.Frame(frame).RequestID() {
			t.Fatalf("broken REQUEST block: %v with frame %x, want BAD_FRAME and the header", err, []byte(f))
		}
		return
	}
	if err != nil {
		t.Fatalf("Parse rejects (%v) a block the reference accepts: %x", err, body)
	}
	if !f.HasExt() || !bytes.Equal(f.Payload(), ref.msg) {
		t.Fatalf("payload %x, reference message %x", f.Payload(), ref.msg)
	}
	if len(ref.msg) > 0 && &f.Payload()[0] != &ref.msg[0] {
		t.Fatalf("payload is not a view of the frame")
	}
	it := f.Ext()
	for i, e := range ref.entries {
		if !it.Next() {
			t.Fatalf("iterator stopped after %d of %d entries", i, len(ref.entries))
		}
		if byte(it.Tag()) != e.tag || !bytes.Equal(it.Value(), e.val) {
			t.Fatalf("entry %d: %d=%x, reference %d=%x", i, it.Tag(), it.Value(), e.tag, e.val)
		}
	}
	if it.Next() {
		t.Fatalf("iterator yields more than the reference's %d entries", len(ref.entries))
	}
	checkAccessors(t, f, ref)
}

// checkAccessors compares every typed accessor of f with the reference's
// reading of the same entries.
func checkAccessors(t *testing.T, f proto.Frame, ref refDecoded) {
	t.Helper()
	u32s := []struct {
		tag  byte
		unit time.Duration
		get  func() (time.Duration, bool)
	}{
		{1, time.Microsecond, f.Deadline},
		{5, time.Nanosecond, f.ServiceTime},
		{6, time.Microsecond, f.RetryAfter},
	}
	for _, a := range u32s {
		want, wok := ref.u32(a.tag)
		got, ok := a.get()
		if ok != wok || got != time.Duration(want)*a.unit {
			t.Fatalf("tag %d: accessor %v %v, reference %d %v", a.tag, got, ok, want, wok)
		}
	}
	wantA, wok := ref.find(7)
	gotA, ok := f.Attempt()
	if ok != wok || ok && gotA != wantA[0] {
		t.Fatalf("Attempt %d %v, reference %x %v", gotA, ok, wantA, wok)
	}
	for _, a := range []struct {
		tag byte
		got []byte
	}{{3, f.TraceState()}, {4, f.Caller()}} {
		want, _ := ref.find(a.tag)
		if !bytes.Equal(a.got, want) || (a.got == nil) != (want == nil) {
			t.Fatalf("tag %d: accessor %q, reference %q", a.tag, a.got, want)
		}
	}
	id, span, flags, tok := ref.trace()
	tc, ok := f.Trace()
	if ok != tok || ok && (tc.TraceID != id || tc.SpanID != span || tc.Flags != flags) || !ok && tc != (proto.TraceContext{}) {
		t.Fatalf("Trace %+v %v, reference %x %x %x %v", tc, ok, id, span, flags, tok)
	}
	for tag := range 256 {
		want, wok := ref.find(byte(tag))
		got, ok := f.ExtValue(proto.ExtTag(tag))
		if ok != wok || !bytes.Equal(got, want) {
			t.Fatalf("ExtValue(%d) = %x %v, reference %x %v", tag, got, ok, want, wok)
		}
	}
}

func TestExtParseRules(t *testing.T) {
	msg := []byte{0x0a, 0x02, 'h', 'i'}
	entries := func(es ...refEntry) []byte { return refBody(es, msg) }
	long := bytes.Repeat([]byte{'x'}, 255)
	tests := []struct {
		name string
		body []byte
		want proto.Error // 0: accepted
	}{
		{"no room for ext_len", nil, proto.ErrExtLen},
		{"one byte", []byte{0}, proto.ErrExtLen},
		{"ext_len past length", []byte{0, 5, 1, 4, 0, 0}, proto.ErrExtLen},
		{"ext_len 0xffff", []byte{0xff, 0xff, 1, 2, 3}, proto.ErrExtLen},
		{"empty block, empty message", []byte{0, 0}, 0},
		{"empty block", entries(), 0},
		{"block fills payload", []byte{0, 6, 1, 4, 0, 0, 0, 9}, 0},
		{"lone tag byte", append([]byte{0, 1, 4}, msg...), proto.ErrExtEntries},
		{"value past ext_len", append([]byte{0, 4, 4, 5, 'a', 'b'}, msg...), proto.ErrExtEntries},
		{"second entry cut", append([]byte{0, 7, 7, 1, 0, 4, 9, 'a', 'b'}, msg...), proto.ErrExtEntries},
		{"DEADLINE twice", entries(refEntry{1, u32be(1)}, refEntry{1, u32be(2)}), proto.ErrExtRepeated},
		{"ATTEMPT twice apart", entries(refEntry{7, []byte{0}}, refEntry{4, []byte("a")}, refEntry{7, []byte{1}}), proto.ErrExtRepeated},
		{"reserved 9 twice", entries(refEntry{9, nil}, refEntry{9, []byte{1}}), proto.ErrExtRepeated},
		{"reserved 127 twice", entries(refEntry{127, nil}, refEntry{127, nil}), proto.ErrExtRepeated},
		{"app 128 twice", entries(refEntry{128, []byte("a")}, refEntry{128, []byte("b")}), 0},
		{"app 255 three times", entries(refEntry{255, nil}, refEntry{255, nil}, refEntry{255, long}), 0},
		{"tag 0 twice", entries(refEntry{0, nil}, refEntry{0, []byte{1}}), 0},
		{"DEADLINE 3 bytes", entries(refEntry{1, []byte{0, 0, 1}}), proto.ErrExtSize},
		{"DEADLINE 5 bytes", entries(refEntry{1, []byte{0, 0, 0, 0, 1}}), proto.ErrExtSize},
		{"TRACE 25 bytes", entries(refEntry{2, sampleTrace()[:25]}), proto.ErrExtSize},
		{"TRACE 27 bytes", entries(refEntry{2, append(sampleTrace(), 0)}), proto.ErrExtSize},
		{"SERVICE_TIME 8 bytes", entries(refEntry{5, make([]byte, 8)}), proto.ErrExtSize},
		{"RETRY_AFTER 2 bytes", entries(refEntry{6, make([]byte, 2)}), proto.ErrExtSize},
		{"ATTEMPT empty", entries(refEntry{7, nil}), proto.ErrExtSize},
		{"ATTEMPT 2 bytes", entries(refEntry{7, []byte{1, 2}}), proto.ErrExtSize},
		{"TRACESTATE 255 bytes", entries(refEntry{3, long}), 0},
		{"CALLER empty", entries(refEntry{4, nil}), 0},
		{"unknown 8 skipped", entries(refEntry{8, make([]byte, 10)}, refEntry{1, u32be(5)}), 0},
		{"TRACE version 1 accepted", entries(refEntry{2, append([]byte{1}, sampleTrace()[1:]...)}), 0},
		{"SERVICE_TIME in a request", entries(refEntry{5, u32be(7)}), 0},
		{"every known tag", entries(refEntry{1, u32be(1)}, refEntry{2, sampleTrace()}, refEntry{3, []byte("a=b")},
			refEntry{4, []byte("web")}, refEntry{5, u32be(2)}, refEntry{6, u32be(3)}, refEntry{7, []byte{4}}), 0},
		{"size error after repeat", entries(refEntry{1, u32be(1)}, refEntry{1, []byte{1}}), proto.ErrExtRepeated},
	}
	for _, tt := range tests {
		for _, kind := range []byte{kindReq, kindResp} {
			name := tt.name + "/" + proto.Kind(kind).String()
			t.Run(name, func(t *testing.T) {
				flags := flagExt
				if kind == kindReq {
					flags |= uint16(proto.FlagOneway) // ONEWAY and EXT together
				}
				frame := refFrame(kind, flags, 77, 9, 0, tt.body)
				f, err := proto.Parse(frame)
				if tt.want == 0 {
					if err != nil {
						t.Fatalf("Parse: %v", err)
					}
					checkAgainstRef(t, frame)
					return
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("Parse error %v, want %v", err, tt.want)
				}
				if strings.Contains(err.Error(), "invalid error value") || !strings.Contains(err.Error(), "extension block") {
					t.Errorf("message %q does not name the extension block", err)
				}
				if kind == kindResp {
					if !errors.Is(err, proto.ErrDrop) || f != nil {
						t.Fatalf("response: %v, frame %x; want a drop", err, []byte(f))
					}
					return
				}
				if !errors.Is(err, proto.ErrBadFrame) || len(f) != proto.HeaderLen || f.RequestID() != 77 {
					t.Fatalf("request: %v, frame %x; want BAD_FRAME with the header", err, []byte(f))
				}
				// The header view has FlagExt but no block: its views are empty.
				if len(f.Payload()) != 0 || f.Caller() != nil {
					t.Fatalf("header view payload %x", f.Payload())
				}
				if it := f.Ext(); it.Next() {
					t.Fatalf("header view yields entry %d", it.Tag())
				}
				resp, err := proto.EncodeBadFrame(make([]byte, 512), frame, err)
				if err != nil || len(resp) > len(frame) {
					t.Fatalf("BAD_FRAME answer %x: %v", []byte(resp), err)
				}
				checkAgainstRef(t, frame)
			})
		}
	}
}

// TestExtFlagRules: which kinds may carry EXT, and the plain fast path is
// untouched.
func TestExtFlagRules(t *testing.T) {
	body := refBody([]refEntry{{1, u32be(1000)}}, nil)
	for _, tt := range []struct {
		kind   byte
		flags  uint16
		status uint16
		method uint32
		want   error
	}{
		{kindReq, flagExt, 0, 9, nil},
		{kindReq, flagExt | 1, 0, 9, nil},
		{kindResp, flagExt, 0, 9, nil},
		{kindResp, flagExt, uint16(proto.StatusRateLimited), 9, nil},
		{kindReq, flagExt, 1, 9, proto.ErrStatus},
		{kindReq, flagExt, 0, 0, proto.ErrMethod},
		{kindResp, flagExt | 1, 0, 9, proto.ErrFlags},
		{byte(proto.KindPing), flagExt, 0, 0, proto.ErrFlags},
		{byte(proto.KindPong), flagExt, 0, 0, proto.ErrFlags},
		{kindReq, flagExt | uint16(proto.FlagSealed), 0, 9, proto.ErrSealed},
		{kindReq, flagExt | 1<<3, 0, 9, proto.ErrFlags},
		{kindReq, flagExt | 1<<15, 0, 9, proto.ErrFlags},
	} {
		frame := refFrame(tt.kind, tt.flags, 5, tt.method, tt.status, body)
		f, err := proto.Parse(frame)
		if tt.want == nil {
			if err != nil {
				t.Errorf("kind %d flags %#x: %v", tt.kind, tt.flags, err)
			} else if d, ok := f.Deadline(); !ok || d != time.Millisecond {
				t.Errorf("kind %d flags %#x: Deadline %v %v", tt.kind, tt.flags, d, ok)
			}
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("kind %d flags %#x status %d method %d: %v, want %v", tt.kind, tt.flags, tt.status, tt.method, err, tt.want)
		}
	}
	// Without FlagExt the same bytes are a plain message that starts with
	// 00 06: nothing reads them as a block.
	plain := refFrame(kindReq, 0, 5, 9, 0, body)
	f, err := proto.Parse(plain)
	if err != nil || f.HasExt() || !bytes.Equal(f.Payload(), body) {
		t.Fatalf("plain frame: %v, payload %x", err, f.Payload())
	}
	it := f.Ext()
	if _, ok := f.Deadline(); ok || it.Next() {
		t.Fatal("a plain frame has extension entries")
	}
}

func TestExtAccessors(t *testing.T) {
	msg := []byte{0x08, 0x2a}
	state := []byte("congo=t61rcWkgMzE")
	entries := []refEntry{
		{4, []byte("checkout")},
		{1, u32be(250_000)},
		{9, []byte("unknown, skipped")},
		{2, sampleTrace()},
		{200, []byte("app-a")},
		{3, state},
		{7, []byte{3}},
		{200, []byte("app-b")},
	}
	frame := refFrame(kindReq, flagExt, 1, 9, 0, refBody(entries, msg))
	f, err := proto.Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := f.Deadline(); !ok || d != 250*time.Millisecond {
		t.Errorf("Deadline %v %v", d, ok)
	}
	if a, ok := f.Attempt(); !ok || a != 3 {
		t.Errorf("Attempt %d %v", a, ok)
	}
	if string(f.Caller()) != "checkout" || !bytes.Equal(f.TraceState(), state) {
		t.Errorf("Caller %q TraceState %q", f.Caller(), f.TraceState())
	}
	tc, ok := f.Trace()
	if !ok || !tc.IsValid() || !tc.Sampled() || tc.TraceID[0] != 0xa0 || tc.TraceID[15] != 0xaf || tc.SpanID[7] != 0xb7 {
		t.Errorf("Trace %+v %v", tc, ok)
	}
	if v, ok := f.ExtValue(200); !ok || string(v) != "app-a" {
		t.Errorf("ExtValue(200) = %q %v, want the first", v, ok)
	}
	if _, ok := f.ServiceTime(); ok {
		t.Error("ServiceTime present")
	}
	if _, ok := f.ExtValue(201); ok {
		t.Error("ExtValue(201) present")
	}
	var apps []string
	for it := f.Ext(); it.Next(); {
		if it.Tag() >= proto.ExtApp {
			apps = append(apps, string(it.Value()))
		}
	}
	if strings.Join(apps, ",") != "app-a,app-b" {
		t.Errorf("application entries %q", apps)
	}
	// Values are views of the frame whose capacity stops at their end.
	v := f.Caller()
	if &v[0] != &frame[proto.HeaderLen+4] || cap(v) != len(v) {
		t.Errorf("Caller is not a capped view")
	}
	if !bytes.Equal(f.Payload(), msg) || f.PayloadLen() != len(frame)-proto.HeaderLen {
		t.Errorf("Payload %x, PayloadLen %d", f.Payload(), f.PayloadLen())
	}
	if fields := f.Fields(); !fields.Next() || string(f.ErrorMessage()) != "" {
		t.Error("Fields do not read the message")
	}
	checkAgainstRef(t, frame)
}

func TestExtUncheckedFrameIsSafe(t *testing.T) {
	// Frames that did not go through Parse: every view stays in bounds.
	for _, body := range [][]byte{nil, {0}, {0, 9, 1}, {0, 3, 1, 4, 0}, {0, 2, 1, 9}} {
		f := proto.Frame(refFrame(kindReq, flagExt, 1, 9, 0, body))
		_ = f.Payload()
		for it := f.Ext(); it.Next(); {
		}
		f.Deadline()
		f.Trace()
		f.Caller()
		f.SetDeadline(time.Second)
		f.SetAttempt(1)
		if _, err := proto.StripExt(make([]byte, 64), f); err != nil {
			t.Errorf("StripExt(%x): %v", body, err)
		}
	}
}

func TestTraceContext(t *testing.T) {
	var tc proto.TraceContext
	if tc.IsValid() || tc.Sampled() {
		t.Fatal("zero context is valid or sampled")
	}
	tc.TraceID[3] = 1
	if tc.IsValid() {
		t.Fatal("zero span-id is valid")
	}
	tc.SpanID[7] = 1
	tc.Flags = 0x03
	if !tc.IsValid() || !tc.Sampled() {
		t.Fatal("valid sampled context reads otherwise")
	}
	// Version ≠ 0 and all-zero ids read as absent, not as an error.
	for name, v := range map[string][]byte{
		"version 1":    append([]byte{1}, sampleTrace()[1:]...),
		"version 0xff": append([]byte{0xff}, sampleTrace()[1:]...),
		"zero trace":   append(append([]byte{0}, make([]byte, 16)...), sampleTrace()[17:]...),
		"zero span":    append(append(sampleTrace()[:17:17], make([]byte, 8)...), 1),
	} {
		f, err := proto.Parse(refFrame(kindReq, flagExt, 1, 9, 0, refBody([]refEntry{{2, v}}, nil)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tc, ok := f.Trace(); ok || tc != (proto.TraceContext{}) {
			t.Errorf("%s: Trace = %+v %v, want absent", name, tc, ok)
		}
		if raw, ok := f.ExtValue(proto.ExtTrace); !ok || !bytes.Equal(raw, v) {
			t.Errorf("%s: raw value lost", name)
		}
	}
}

// TestExtBuilderEncodes: the builder's output is the reference encoding of
// the same entries, known tags in tag order then application entries.
func TestExtBuilderEncodes(t *testing.T) {
	var tc proto.TraceContext
	copy(tc.TraceID[:], sampleTrace()[1:17])
	copy(tc.SpanID[:], sampleTrace()[17:25])
	tc.Flags = 1
	var x proto.ExtBuilder
	x.AddApp(130, []byte("z"))
	x.SetCaller([]byte("old"))
	x.SetAttempt(2)
	x.SetTraceState([]byte("k=v"))
	x.SetTrace(tc)
	x.SetDeadline(1500*time.Microsecond + 999*time.Nanosecond) // truncated to 1500 µs
	x.SetCaller([]byte("web"))                                 // the last value wins
	x.SetServiceTime(42 * time.Nanosecond)
	x.SetRetryAfter(2 * time.Second)
	x.AddApp(129, nil)
	x.AddApp(130, []byte("y"))
	if x.Err() != nil {
		t.Fatal(x.Err())
	}
	want := refBody([]refEntry{
		{1, u32be(1500)}, {2, sampleTrace()}, {3, []byte("k=v")}, {4, []byte("web")},
		{5, u32be(42)}, {6, u32be(2_000_000)}, {7, []byte{2}},
		{130, []byte("z")}, {129, nil}, {130, []byte("y")},
	}, []byte("msg"))
	if x.Len() != len(want)-3 {
		t.Errorf("Len %d, want %d", x.Len(), len(want)-3)
	}
	dst := make([]byte, 256)
	f, err := proto.EncodeRequestExt(dst, 11, 9, proto.FlagOneway, &x, []byte("msg"))
	if err != nil {
		t.Fatal(err)
	}
	if ref := refFrame(kindReq, flagExt|1, 11, 9, 0, want); !bytes.Equal(f, ref) {
		t.Fatalf("encoder writes\n%x\nreference\n%x", []byte(f), ref)
	}
	checkAgainstRef(t, f)

	// An empty or nil builder writes exactly the plain frame.
	plain, _ := proto.EncodeRequest(make([]byte, 64), 11, 9, 0, []byte("msg"))
	for _, b := range []*proto.ExtBuilder{nil, {}} {
		g, err := proto.EncodeRequestExt(make([]byte, 64), 11, 9, 0, b, []byte("msg"))
		if err != nil || !bytes.Equal(g, plain) {
			t.Errorf("empty builder: %x, %v", []byte(g), err)
		}
	}
	x.Reset()
	if x.Len() != 0 || x.Err() != nil {
		t.Errorf("Reset left %d bytes, %v", x.Len(), x.Err())
	}
}

func TestExtBuilderDurations(t *testing.T) {
	for _, tt := range []struct {
		d        time.Duration
		us, ns   uint32
		deadline time.Duration // what Deadline reads back
	}{
		{-time.Second, 0, 0, 0},
		{0, 0, 0, 0},
		{999 * time.Nanosecond, 0, 999, 0}, // under a microsecond: expired, never rounded up
		{time.Microsecond, 1, 1000, time.Microsecond},
		{3 * time.Second, 3_000_000, 3_000_000_000, 3 * time.Second},
		{5 * time.Second, 5_000_000, math.MaxUint32, 5 * time.Second},
		{math.MaxInt64, math.MaxUint32, math.MaxUint32, math.MaxUint32 * time.Microsecond},
	} {
		var x proto.ExtBuilder
		x.SetDeadline(tt.d)
		x.SetRetryAfter(tt.d)
		x.SetServiceTime(tt.d)
		f, err := proto.EncodeExt(make([]byte, 64), proto.Header{Kind: proto.KindResponse, RequestID: 1}, &x, nil)
		if err != nil {
			t.Fatal(err)
		}
		ref := refDecode(f[proto.HeaderLen:])
		dl, _ := ref.u32(1)
		ra, _ := ref.u32(6)
		st, _ := ref.u32(5)
		if dl != uint64(tt.us) || ra != uint64(tt.us) || st != uint64(tt.ns) {
			t.Errorf("%v: DEADLINE %d RETRY_AFTER %d SERVICE_TIME %d, want %d µs %d ns", tt.d, dl, ra, st, tt.us, tt.ns)
		}
		if d, ok := f.Deadline(); !ok || d != tt.deadline {
			t.Errorf("%v: Deadline reads %v", tt.d, d)
		}
	}
}

func TestExtBuilderErrors(t *testing.T) {
	long := make([]byte, 256)
	for name, tt := range map[string]struct {
		fill func(*proto.ExtBuilder)
		want error
	}{
		"long caller":     {func(x *proto.ExtBuilder) { x.SetCaller(long) }, proto.ErrExtValueTooLong},
		"long tracestate": {func(x *proto.ExtBuilder) { x.SetTraceState(long) }, proto.ErrExtValueTooLong},
		"long app":        {func(x *proto.ExtBuilder) { x.AddApp(200, long) }, proto.ErrExtValueTooLong},
		"tag 127":         {func(x *proto.ExtBuilder) { x.AddApp(127, nil) }, proto.ErrExtTag},
		"tag 1":           {func(x *proto.ExtBuilder) { x.AddApp(proto.ExtDeadline, u32be(1)) }, proto.ErrExtTag},
		"nine app": {func(x *proto.ExtBuilder) {
			for i := range proto.MaxAppExt + 1 {
				x.AddApp(proto.ExtTag(128+i), nil)
			}
		}, proto.ErrExtTooMany},
		"first error kept": {func(x *proto.ExtBuilder) { x.AddApp(3, nil); x.SetCaller(long) }, proto.ErrExtTag},
	} {
		var x proto.ExtBuilder
		x.SetAttempt(1)
		tt.fill(&x)
		if x.Err() != tt.want {
			t.Errorf("%s: Err %v, want %v", name, x.Err(), tt.want)
		}
		dst := make([]byte, 1024)
		if _, err := proto.EncodeRequestExt(dst, 1, 9, 0, &x, nil); err != tt.want {
			t.Errorf("%s: EncodeRequestExt %v", name, err)
		}
		if _, err := proto.EncodeErrorExt(dst, 1, 9, proto.StatusOverloaded, &x, "x"); err != tt.want {
			t.Errorf("%s: EncodeErrorExt %v", name, err)
		}
		if _, err := proto.SealExt(dst, 512, proto.Header{Kind: proto.KindResponse}, &x); err != tt.want {
			t.Errorf("%s: SealExt %v", name, err)
		}
	}
	// A full builder fits its bound.
	var x proto.ExtBuilder
	x.SetDeadline(1)
	x.SetTrace(proto.TraceContext{})
	x.SetTraceState(long[:255])
	x.SetCaller(long[:255])
	x.SetServiceTime(1)
	x.SetRetryAfter(1)
	x.SetAttempt(1)
	for i := range proto.MaxAppExt {
		x.AddApp(proto.ExtTag(255-i), long[:255])
	}
	if x.Err() != nil || x.Len() != proto.MaxExtBlockLen {
		t.Fatalf("full builder: Len %d, MaxExtBlockLen %d, %v", x.Len(), proto.MaxExtBlockLen, x.Err())
	}
	f, err := proto.EncodeRequestExt(make([]byte, proto.HeaderLen+proto.MaxExtBlockLen), 1, 9, 0, &x, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstRef(t, f)
}

func TestEncodeExtRefuses(t *testing.T) {
	var x proto.ExtBuilder
	x.SetAttempt(0)
	dst := make([]byte, 64)
	if _, err := proto.EncodeRequestExt(dst, 1, 0, 0, &x, nil); err != proto.ErrInvalidHeader {
		t.Errorf("method 0: %v", err)
	}
	if _, err := proto.EncodeRequestExt(dst, 1, 9, proto.FlagExt, &x, nil); err != proto.ErrInvalidHeader {
		t.Errorf("FlagExt passed in: %v", err)
	}
	if _, err := proto.EncodeRequest(dst, 1, 9, proto.FlagExt, nil); err != proto.ErrInvalidHeader {
		t.Errorf("EncodeRequest with FlagExt and no block: %v", err)
	}
	// 24 + 5 (block) + 36 > 64.
	if _, err := proto.EncodeRequestExt(dst, 1, 9, 0, &x, make([]byte, 36)); err != proto.ErrBufferTooSmall {
		t.Errorf("too small: %v", err)
	}
	big := make([]byte, proto.MaxFrameLen+16)
	if _, err := proto.EncodeRequestExt(big, 1, 9, 0, &x, big[:proto.MaxPayload-4]); err != proto.ErrPayloadTooLarge {
		t.Errorf("block + payload over 65535: %v", err)
	}
	if _, err := proto.EncodeErrorExt(dst, 1, 9, proto.StatusRateLimited, &x, strings.Repeat("x", 40)); err != proto.ErrBufferTooSmall {
		t.Errorf("error too small: %v", err)
	}
	// Encode's FlagExt follows the block, whatever h says.
	f, err := proto.EncodeExt(dst, proto.Header{Kind: proto.KindResponse, Flags: proto.FlagExt}, nil, []byte{1})
	if err != nil || f.HasExt() {
		t.Errorf("EncodeExt without a block kept FlagExt: %v", err)
	}
}

func TestEncodeExtPayloadInPlace(t *testing.T) {
	var x proto.ExtBuilder
	x.SetDeadline(time.Second)
	x.SetCaller([]byte("web"))
	msg := []byte("0123456789abcdef")
	dst := make([]byte, 128)
	copy(dst[proto.HeaderLen:], msg)
	f, err := proto.EncodeRequestExt(dst, 3, 9, 0, &x, dst[proto.HeaderLen:proto.HeaderLen+len(msg)])
	if err != nil {
		t.Fatal(err)
	}
	g, err := proto.Parse(f)
	if err != nil || !bytes.Equal(g.Payload(), msg) || string(g.Caller()) != "web" {
		t.Fatalf("payload %q caller %q: %v", g.Payload(), g.Caller(), err)
	}
}

func TestFrameSetDeadlineAttempt(t *testing.T) {
	var x proto.ExtBuilder
	x.SetDeadline(time.Second)
	x.SetAttempt(0)
	x.AddApp(200, []byte{7, 7})
	f, _ := proto.EncodeRequestExt(make([]byte, 64), 8, 9, 0, &x, []byte{8, 1})
	before := append([]byte{}, f...)
	if !f.SetDeadline(300*time.Millisecond) || !f.SetAttempt(1) {
		t.Fatal("entries not found")
	}
	want := refFrame(kindReq, flagExt, 8, 9, 0, refBody([]refEntry{{1, u32be(300_000)}, {7, []byte{1}}, {200, []byte{7, 7}}}, []byte{8, 1}))
	if !bytes.Equal(f, want) {
		t.Fatalf("patched\n%x\nwant\n%x\nwas\n%x", []byte(f), want, before)
	}
	if _, err := proto.Parse(f); err != nil {
		t.Fatal(err)
	}
	if !f.SetDeadline(-1) {
		t.Fatal("second patch failed")
	}
	if d, _ := f.Deadline(); d != 0 {
		t.Errorf("negative budget reads %v, want 0 (expired)", d)
	}
	// Frames without the entries report false and keep their bytes.
	x.Reset()
	x.SetCaller([]byte("a"))
	g, _ := proto.EncodeRequestExt(make([]byte, 64), 8, 9, 0, &x, nil)
	plain, _ := proto.EncodeRequest(make([]byte, 64), 8, 9, 0, []byte{0, 6, 1, 4, 0, 0, 0, 1})
	for _, fr := range []proto.Frame{g, plain} {
		keep := append([]byte{}, fr...)
		if fr.SetDeadline(time.Second) || fr.SetAttempt(1) || !bytes.Equal(fr, keep) {
			t.Errorf("patched a frame without DEADLINE/ATTEMPT: %x", []byte(fr))
		}
	}
}

func TestStripExt(t *testing.T) {
	var x proto.ExtBuilder
	x.SetDeadline(time.Second)
	x.SetCaller([]byte("web"))
	x.SetAttempt(2)
	msg := []byte("\x0a\x07user:42")
	plain, _ := proto.EncodeRequest(make([]byte, 64), 42, 9, proto.FlagOneway, msg)

	buf := make([]byte, 64)
	f, _ := proto.EncodeRequestExt(buf, 42, 9, proto.FlagOneway, &x, msg)
	other := make([]byte, 64)
	g, err := proto.StripExt(other, f)
	if err != nil || !bytes.Equal(g, plain) {
		t.Fatalf("into another buffer: %x, %v", []byte(g), err)
	}
	// In place: the frame's own buffer, same start.
	g, err = proto.StripExt(buf, f)
	if err != nil || !bytes.Equal(g, plain) || &g[0] != &buf[0] {
		t.Fatalf("in place: %x, %v", []byte(g), err)
	}
	// A plain frame is copied as it is; a too-small dst or a non-frame fail.
	if g, err := proto.StripExt(make([]byte, 64), plain); err != nil || !bytes.Equal(g, plain) {
		t.Errorf("plain: %x, %v", []byte(g), err)
	}
	if _, err := proto.StripExt(make([]byte, 30), plain); err != proto.ErrBufferTooSmall {
		t.Errorf("small dst: %v", err)
	}
	if _, err := proto.StripExt(buf, plain[:10]); err != proto.ErrNotFrame {
		t.Errorf("10 bytes: %v", err)
	}
}

// TestExtFallbackWithOldPeer plays both directions of the old/new rule
// with a v1 receiver that predates EXT (its flag rule is written here):
// an EXT request gets BAD_FRAME from it, the stripped resend is served; and
// a new receiver serves an old client's plain request unchanged.
func TestExtFallbackWithOldPeer(t *testing.T) {
	oldAccepts := func(b []byte) bool { // v1 before EXT: any flag but ONEWAY is BAD_FRAME
		return len(b) >= 24 && (uint16(b[22])<<8|uint16(b[23]))&^1 == 0
	}
	var x proto.ExtBuilder
	x.SetDeadline(time.Second)
	msg := []byte{8, 1}
	req, _ := proto.EncodeRequestExt(make([]byte, 64), 5, 9, 0, &x, msg)
	if oldAccepts(req) {
		t.Fatal("an old peer would accept flag bit 1")
	}
	resent, err := proto.StripExt(make([]byte, 64), req)
	if err != nil || !oldAccepts(resent) {
		t.Fatalf("stripped request not acceptable to an old peer: %x, %v", []byte(resent), err)
	}
	f, err := proto.Parse(resent)
	if err != nil || f.RequestID() != 5 || !bytes.Equal(f.Payload(), msg) {
		t.Fatalf("stripped request: %v", err)
	}
	old, _ := proto.EncodeRequest(make([]byte, 64), 6, 9, 0, msg)
	if f, err := proto.Parse(old); err != nil || f.HasExt() || !bytes.Equal(f.Payload(), msg) {
		t.Fatalf("old client's request: %v", err)
	}
}

func TestSealExt(t *testing.T) {
	msg := []byte{0x0a, 0x05, 'a', 'l', 'i', 'c', 'e'}
	tx := make([]byte, 0, 256)
	buf := append(tx[:proto.ResponseHeadroom], msg...) // the handler appended its payload
	h := proto.Header{Kind: proto.KindResponse, RequestID: 42, MethodID: 9, Status: proto.StatusOverloaded}

	var x proto.ExtBuilder
	x.SetServiceTime(18500 * time.Nanosecond)
	x.SetRetryAfter(5 * time.Millisecond)
	f, err := proto.SealExt(buf, proto.ResponseHeadroom, h, &x)
	if err != nil {
		t.Fatal(err)
	}
	if &f[0] != &buf[0] { // the two runtime tags fill ResponseHeadroom exactly
		t.Fatalf("frame starts at %d", len(buf)-len(f))
	}
	g, err := proto.Parse(f)
	if err != nil || &g.Payload()[0] != &buf[proto.ResponseHeadroom] {
		t.Fatalf("payload moved or frame invalid: %v", err)
	}
	want := refFrame(kindResp, flagExt, 42, 9, uint16(proto.StatusOverloaded), refBody([]refEntry{{5, u32be(18500)}, {6, u32be(5000)}}, msg))
	if !bytes.Equal(f, want) {
		t.Fatalf("sealed\n%x\nwant\n%x", []byte(f), want)
	}

	// SERVICE_TIME alone: the frame starts 6 bytes in.
	x.Reset()
	x.SetServiceTime(time.Microsecond)
	f, err = proto.SealExt(buf, proto.ResponseHeadroom, h, &x)
	if err != nil || len(buf)-len(f) != 6 {
		t.Fatalf("SERVICE_TIME only: start %d, %v", len(buf)-len(f), err)
	}
	checkAgainstRef(t, f)

	// No block: a plain header right in front of the payload.
	f, err = proto.SealExt(buf, proto.ResponseHeadroom, h, nil)
	if err != nil || f.HasExt() || len(buf)-len(f) != proto.ResponseHeadroom-proto.HeaderLen || !bytes.Equal(f.Payload(), msg) {
		t.Fatalf("no block: %x, %v", []byte(f), err)
	}

	x.AddApp(200, []byte("no room for this"))
	if _, err := proto.SealExt(buf, proto.ResponseHeadroom, h, &x); err != proto.ErrHeadroom {
		t.Errorf("headroom: %v", err)
	}
	if _, err := proto.SealExt(buf, len(buf)+1, h, nil); err != proto.ErrBufferTooSmall {
		t.Errorf("offset past the end: %v", err)
	}
	if _, err := proto.SealExt(buf, -1, h, nil); err != proto.ErrBufferTooSmall {
		t.Errorf("negative offset: %v", err)
	}
	big := make([]byte, proto.ResponseHeadroom+proto.MaxPayload)
	x.Reset()
	x.SetServiceTime(1)
	if _, err := proto.SealExt(big, proto.ResponseHeadroom, h, &x); err != proto.ErrPayloadTooLarge {
		t.Errorf("block + payload over 65535: %v", err)
	}
}

func TestEncodeErrorExt(t *testing.T) {
	var x proto.ExtBuilder
	x.SetServiceTime(900 * time.Nanosecond)
	x.SetRetryAfter(250 * time.Millisecond)
	f, err := proto.EncodeErrorExt(make([]byte, 128), 4, 9, proto.StatusRateLimited, &x, "slow down")
	if err != nil {
		t.Fatal(err)
	}
	g, err := proto.Parse(f)
	if err != nil || g.Status() != proto.StatusRateLimited || string(g.ErrorMessage()) != "slow down" {
		t.Fatalf("status %v message %q: %v", g.Status(), g.ErrorMessage(), err)
	}
	if ra, ok := g.RetryAfter(); !ok || ra != 250*time.Millisecond {
		t.Errorf("RetryAfter %v %v", ra, ok)
	}
	want := refFrame(kindResp, flagExt, 4, 9, uint16(proto.StatusRateLimited),
		refBody([]refEntry{{5, u32be(900)}, {6, u32be(250_000)}}, append([]byte{0x0a, 9}, "slow down"...)))
	if !bytes.Equal(f, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", []byte(f), want)
	}
	plain, _ := proto.EncodeError(make([]byte, 128), 4, 9, proto.StatusRateLimited, "slow down")
	if g, err := proto.EncodeErrorExt(make([]byte, 128), 4, 9, proto.StatusRateLimited, nil, "slow down"); err != nil || !bytes.Equal(g, plain) {
		t.Errorf("no block: %x, %v", []byte(g), err)
	}
}

// TestExtDifferential: random blocks, valid and broken, written by the
// reference encoder, parse as the reference decoder says; random builders
// write what the reference encoder writes.
func TestExtDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	tags := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 127, 128, 129, 200, 255}
	accepted := 0
	for range 20000 {
		var entries []refEntry
		for range rng.IntN(6) {
			tag := tags[rng.IntN(len(tags))]
			size := rng.IntN(30)
			if want, ok := refSizes[tag]; ok && want >= 0 && rng.IntN(8) != 0 {
				size = want // mostly the right size
			}
			val := make([]byte, size)
			for i := range val {
				val[i] = byte(rng.Uint32())
			}
			entries = append(entries, refEntry{tag, val})
		}
		msg := make([]byte, rng.IntN(8))
		body := refBody(entries, msg)
		switch rng.IntN(6) { // sometimes break the framing itself
		case 0:
			body[1] += byte(1 + rng.IntN(4))
		case 1:
			if body[1] > 0 {
				body[1]--
			}
		}
		kind := kindReq
		if rng.IntN(2) == 0 {
			kind = kindResp
		}
		frame := refFrame(kind, flagExt, rng.Uint64(), 9, 0, body)
		checkAgainstRef(t, frame)
		if refDecode(body).bad == 0 {
			accepted++
		}
	}
	if accepted < 2000 || accepted > 18000 {
		t.Fatalf("%d of 20000 random blocks valid: the generator does not exercise both sides", accepted)
	}

	for range 2000 {
		var x proto.ExtBuilder
		var entries []refEntry
		var tc proto.TraceContext
		if rng.IntN(2) == 0 {
			x.SetDeadline(time.Duration(rng.Uint32()) * time.Microsecond)
		}
		if rng.IntN(2) == 0 {
			for i := range tc.TraceID {
				tc.TraceID[i] = byte(rng.Uint32())
			}
			tc.SpanID[0], tc.Flags = byte(rng.Uint32()), byte(rng.Uint32())
			x.SetTrace(tc)
		}
		caller := bytes.Repeat([]byte{'c'}, rng.IntN(256))
		if rng.IntN(2) == 0 {
			x.SetCaller(caller)
		}
		if rng.IntN(2) == 0 {
			x.SetAttempt(uint8(rng.Uint32()))
		}
		for range rng.IntN(proto.MaxAppExt + 1) {
			e := refEntry{byte(128 + rng.IntN(128)), bytes.Repeat([]byte{'a'}, rng.IntN(40))}
			x.AddApp(proto.ExtTag(e.tag), e.val)
			entries = append(entries, e)
		}
		f, err := proto.EncodeRequestExt(make([]byte, 4096), 1, 9, 0, &x, []byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		if x.Len() == 0 {
			continue
		}
		ref := refDecode(f[proto.HeaderLen:])
		if ref.bad != 0 || string(ref.msg) != "m" {
			t.Fatalf("reference rejects the builder's block %x", f[proto.HeaderLen:])
		}
		var apps []refEntry
		for _, e := range ref.entries {
			if e.tag >= 128 {
				apps = append(apps, e)
			}
		}
		if len(apps) != len(entries) {
			t.Fatalf("%d application entries, reference reads %d", len(entries), len(apps))
		}
		for i := range apps {
			if apps[i].tag != entries[i].tag || !bytes.Equal(apps[i].val, entries[i].val) {
				t.Fatalf("application entry %d differs", i)
			}
		}
		checkAgainstRef(t, f)
	}
}

func TestExtTagNames(t *testing.T) {
	for tag, want := range map[proto.ExtTag]string{1: "DEADLINE", 2: "TRACE", 5: "SERVICE_TIME", 7: "ATTEMPT", 0: "TAG(0)", 8: "TAG(8)", 128: "APP(128)", 255: "APP(255)"} {
		if tag.String() != want {
			t.Errorf("ExtTag(%d) = %q, want %q", tag, tag.String(), want)
		}
	}
}

// TestSealServiceTime: SealServiceTime writes what SealExt writes with a
// builder holding SERVICE_TIME alone, and fails where it fails.
func TestSealServiceTime(t *testing.T) {
	h := proto.Header{Kind: proto.KindResponse, RequestID: 7, MethodID: 9, Status: proto.StatusOK}
	for _, c := range []struct {
		d       time.Duration
		room    int // bytes in front of the payload
		payload int
	}{
		{0, proto.ResponseHeadroom, 0}, {1500 * time.Nanosecond, proto.ResponseHeadroom, 64},
		{-time.Second, proto.ResponseHeadroom, 3}, {10 * time.Second, proto.ResponseHeadroom, 1}, // saturates
		{time.Millisecond, proto.HeaderLen + 8, 5},                   // exactly the room
		{time.Millisecond, proto.HeaderLen + 7, 5},                   // too little room
		{time.Millisecond, proto.ResponseHeadroom, proto.MaxPayload}, // too large with the block
	} {
		fill := func() []byte {
			buf := make([]byte, c.room+c.payload)
			for i := range buf[c.room:] {
				buf[c.room+i] = byte(i)
			}
			return buf
		}
		var x proto.ExtBuilder
		x.SetServiceTime(c.d)
		want, werr := proto.SealExt(fill(), c.room, h, &x)
		got, err := proto.SealServiceTime(fill(), c.room, h, c.d)
		if !errors.Is(err, werr) || !bytes.Equal(got, want) {
			t.Errorf("d %v room %d payload %d: %x (%v), SealExt %x (%v)", c.d, c.room, c.payload, []byte(got), err, []byte(want), werr)
		}
		if err == nil {
			if st, ok := got.ServiceTime(); !ok || st != min(max(c.d, 0), time.Duration(1<<32-1)) {
				t.Errorf("d %v: the frame says SERVICE_TIME %v %v", c.d, st, ok)
			}
		}
	}
}
