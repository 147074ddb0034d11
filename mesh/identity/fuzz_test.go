package identity

import (
	"bytes"
	"sync"
	"testing"

	"github.com/zerohop/zerohop/proto"
)

// fuzzPair is shared by the iterations of a fuzz run: sessions are
// established once, and every iteration seals under fresh packet numbers.
var (
	fuzzOnce sync.Once
	fuzzP    *pair
	fuzzMu   sync.Mutex
)

func fuzzPairFor(t *testing.T) *pair {
	fuzzOnce.Do(func() { fuzzP = newPair(t, SuiteAES128GCM, TableConfig{}) })
	return fuzzP
}

// FuzzSealOpen is the differential check open(seal(x)) == x over any
// payload and header choice, and then flips the bits given by the fuzzer
// (at any offset of the sealed frame, header included) or truncates the
// frame: such a frame must never open. The receive side is a second table
// with the peer's keys, as a real peer would hold them.
func FuzzSealOpen(f *testing.F) {
	f.Add([]byte{0x0a, 0x07, 'u', 's', 'e', 'r', ':', '4', '2'}, uint64(42), false, uint16(30), byte(1), uint16(0))
	f.Add([]byte{}, uint64(1), true, uint16(0), byte(0x80), uint16(0))
	f.Add(bytes.Repeat([]byte{0x08, 0x01}, 700), uint64(7), true, uint16(1300), byte(0), uint16(17))
	f.Add([]byte{0x12, 0x00}, uint64(9), false, uint16(5), byte(0x04), uint16(3)) // the flags byte
	f.Fuzz(func(t *testing.T, payload []byte, id uint64, ext bool, at uint16, mask byte, cut uint16) {
		if len(payload) > 4000 {
			return
		}
		fuzzMu.Lock()
		defer fuzzMu.Unlock()
		p := fuzzPairFor(t)
		cs, ss := p.ct.NewSealer(), p.st.NewSealer()
		var x *proto.ExtBuilder
		if ext {
			x = &proto.ExtBuilder{}
			x.SetAttempt(uint8(id % 5))
		}
		buf, start, end := request(t, id, x, payload)
		want := append([]byte{}, buf[start:end]...)
		sealed, err := cs.Seal(buf, start, end, p.c)
		if err != nil {
			t.Fatal(err)
		}
		orig := append([]byte{}, sealed...)
		// A tampered copy first: it must not open, and must not burn the
		// packet number of the genuine frame.
		bad := append([]byte{}, orig...)
		if mask != 0 {
			bad[int(at)%len(bad)] ^= mask
		}
		if c := int(cut) % len(orig); c != 0 {
			bad = bad[:len(bad)-c]
		}
		if mask != 0 || int(cut)%len(orig) != 0 {
			if plain, _, err := ss.Open(bad, clientAddr); err == nil {
				t.Fatalf("tampered frame (byte %d ^ %#x, cut %d) opened to %x", int(at)%len(orig), mask, int(cut)%len(orig), plain)
			} else if _, ok := err.(Reason); !ok {
				t.Fatalf("error %v is not a Reason", err)
			}
		}
		plain, sess, err := ss.Open(sealed, clientAddr)
		if err != nil {
			t.Fatalf("genuine frame refused: %v", err)
		}
		if sess != p.s || !bytes.Equal(plain, want) {
			t.Fatalf("open(seal(x)) =\n%x\nwant\n%x", plain, want)
		}
		// And a capture of it, replayed, is refused.
		if _, _, err := ss.Open(orig, clientAddr); err != ReasonReplay {
			t.Fatalf("replay: %v", err)
		}
	})
}

// FuzzOpen feeds arbitrary bytes to Open on a table with a live session:
// nothing may panic, every refusal is a Reason, and nothing opens.
func FuzzOpen(f *testing.F) {
	p := newPair(f, SuiteChaCha20Poly1305, TableConfig{})
	cs := p.ct.NewSealer()
	buf, start, end := request(f, 3, nil, []byte{0x08, 0x01})
	sealed, err := cs.Seal(buf, start, end, p.c)
	if err != nil {
		f.Fatal(err)
	}
	sealed = append([]byte{}, sealed...)
	f.Add(sealed)
	f.Add(sealed[:proto.SealedHeaderLen])
	f.Add([]byte("GWIR\x01\x00\x00\x01"))
	sid := p.s.LocalID()
	f.Fuzz(func(t *testing.T, b []byte) {
		// Point the input at the live session, so the fuzzer reaches the
		// AEAD rather than stopping at the session lookup.
		in := append([]byte{}, b...)
		if len(in) >= proto.SealedHeaderLen {
			in[24], in[25], in[26], in[27] = byte(sid>>24), byte(sid>>16), byte(sid>>8), byte(sid)
		}
		genuine := bytes.Equal(in, sealed)
		ss := p.st.NewSealer()
		plain, _, err := ss.Open(in, clientAddr)
		if err == nil {
			if genuine {
				return // the genuine seed, opened once
			}
			t.Fatalf("arbitrary input opened to %x", plain)
		}
		if _, ok := err.(Reason); !ok {
			t.Fatalf("error %v is not a Reason", err)
		}
	})
}
