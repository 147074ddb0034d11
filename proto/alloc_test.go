package proto_test

import (
	"errors"
	"testing"

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
