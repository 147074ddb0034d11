package proto_test

import (
	"errors"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// TestZeroAlloc pins the hot path at 0 allocations: parsing valid and hostile
// frames, classifying the error, answering it, iterating a payload, encoding
// and splitting a stream.
func TestZeroAlloc(t *testing.T) {
	payload := benchPayload(t)
	req := make([]byte, proto.HeaderLen+len(payload))
	if _, err := proto.EncodeRequest(req, 1, 2, 0, payload); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte{}, req...)
	bad[7] = 9
	tx := make([]byte, 2048)
	stream := append(append([]byte{}, req...), req...)
	s := proto.NewStream(make([]byte, 256))
	var sink uint64
	extReq := extRequest(t, payload)
	badExt := append([]byte{}, extReq...)
	badExt[proto.HeaderLen+2+1] = 3 // DEADLINE of 3 bytes: BAD_FRAME
	extStream := append(append([]byte{}, extReq...), extReq...)
	cases := map[string]func(){
		"Parse valid": func() {
			f, err := proto.Parse(req)
			if err != nil {
				t.Fatal(err)
			}
			sink += f.RequestID()
		},
		"Parse bad + classify + answer": func() {
			_, err := proto.Parse(bad)
			if !errors.Is(err, proto.ErrBadFrame) || errors.Is(err, proto.ErrDrop) {
				t.Fatal(err)
			}
			if _, err := proto.EncodeBadFrame(tx, bad, err); err != nil {
				t.Fatal(err)
			}
		},
		"Parse short": func() {
			if _, err := proto.Parse(req[:3]); !errors.Is(err, proto.ErrDrop) {
				t.Fatal(err)
			}
		},
		"Fields": func() {
			it := proto.NewFields(payload)
			for it.Next() {
				sink += uint64(it.Field().Num())
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
		},
		"Fields malformed (Malformed)": func() {
			it := proto.NewFields(groupPayload)
			for it.Next() {
			}
			if _, bad := it.Malformed(); !bad {
				t.Fatal("not malformed")
			}
		},
		"Encode": func() {
			proto.EncodeResponse(tx, 1, 2, 0, payload)
			proto.EncodeError(tx, 1, 2, proto.StatusDenied, "denied")
			proto.EncodePong(tx, 1, proto.PongServing)
			proto.Seal(tx[:proto.HeaderLen+10], proto.Header{Kind: proto.KindResponse})
		},
		"Stream": func() {
			s.Feed(stream[:30])
			for f, _ := s.Next(); f != nil; f, _ = s.Next() {
			}
			s.Feed(stream[30:])
			for f, err := s.Next(); f != nil || err != nil; f, err = s.Next() {
				if err != nil {
					t.Fatal(err)
				}
			}
		},
		"Parse EXT": func() {
			f, err := proto.Parse(extReq)
			if err != nil {
				t.Fatal(err)
			}
			sink += uint64(len(f.Payload()))
		},
		"Parse EXT bad + answer": func() {
			_, err := proto.Parse(badExt)
			if !errors.Is(err, proto.ErrExtSize) {
				t.Fatal(err)
			}
			if _, err := proto.EncodeBadFrame(tx, badExt, err); err != nil {
				t.Fatal(err)
			}
		},
		"EXT accessors": func() {
			f := proto.Frame(extReq)
			d, _ := f.Deadline()
			tc, _ := f.Trace()
			a, _ := f.Attempt()
			v, _ := f.ExtValue(200)
			st, _ := f.ServiceTime()
			sink += uint64(d) + uint64(tc.Flags) + uint64(a) + uint64(len(v)+len(f.Caller())+len(f.TraceState())) + uint64(st)
			for it := f.Ext(); it.Next(); {
				sink += uint64(it.Tag())
			}
		},
		"EXT encoders": func() {
			var x proto.ExtBuilder
			x.SetDeadline(time.Second)
			x.SetCaller(caller)
			x.SetAttempt(0)
			x.AddApp(200, caller)
			f, err := proto.EncodeRequestExt(tx, 1, 2, 0, &x, payload)
			if err != nil {
				t.Fatal(err)
			}
			f.SetDeadline(time.Millisecond)
			f.SetAttempt(1)
			if _, err := proto.StripExt(tx, f); err != nil {
				t.Fatal(err)
			}
			x.Reset()
			x.SetServiceTime(time.Microsecond)
			x.SetRetryAfter(time.Millisecond)
			if _, err := proto.SealExt(tx[:proto.ResponseHeadroom+64], proto.ResponseHeadroom, proto.Header{Kind: proto.KindResponse}, &x); err != nil {
				t.Fatal(err)
			}
			if _, err := proto.EncodeErrorExt(tx, 1, 2, proto.StatusOverloaded, &x, "overloaded"); err != nil {
				t.Fatal(err)
			}
		},
		"Stream EXT": func() {
			s.Feed(extStream[:30])
			for f, _ := s.Next(); f != nil; f, _ = s.Next() {
			}
			s.Feed(extStream[30:])
			for f, err := s.Next(); f != nil || err != nil; f, err = s.Next() {
				if err != nil {
					t.Fatal(err)
				}
			}
		},
	}
	for name, fn := range cases {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, n)
		}
	}
	_ = sink
}

// groupPayload lives outside the test function so that the compiler cannot
// place it on the stack, where leaking it into the iterator would cost an
// allocation that real payloads (in packet buffers) do not.
var groupPayload = []byte{0x0b}

// caller is a CALLER value as the runtime would hold it: on the heap, for
// the life of the process.
var caller = []byte("checkout")

// extRequest is a REQUEST as a mesh client sends it: DEADLINE, TRACE,
// CALLER and ATTEMPT, one application entry, then payload.
func extRequest(t testing.TB, payload []byte) []byte {
	t.Helper()
	var x proto.ExtBuilder
	x.SetDeadline(250 * time.Millisecond)
	x.SetTrace(proto.TraceContext{TraceID: [16]byte{1, 2, 3}, SpanID: [8]byte{4}, Flags: 1})
	x.SetCaller(caller)
	x.SetAttempt(0)
	x.AddApp(200, []byte("tenant-7"))
	f, err := proto.EncodeRequestExt(make([]byte, 256), 1, 2, 0, &x, payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
