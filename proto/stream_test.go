package proto_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/zerohop/zerohop/proto"
)

// streamOf returns n valid frames of varied sizes back to back, and the
// frames themselves.
func streamOf(t testing.TB, n int, rng *rand.Rand) ([]byte, [][]byte) {
	var stream []byte
	var frames [][]byte
	buf := make([]byte, proto.HeaderLen+300)
	for i := range n {
		payload := make([]byte, rng.IntN(300))
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		var f proto.Frame
		var err error
		switch i % 3 {
		case 0:
			f, err = proto.EncodeRequest(buf, uint64(i), 99, 0, payload)
		case 1:
			f, err = proto.EncodePing(buf, uint64(i))
		case 2:
			f, err = proto.EncodeResponse(buf, uint64(i), 99, proto.StatusOK, payload)
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, append([]byte{}, f...))
		stream = append(stream, f...)
	}
	return stream, frames
}

// feedAll pushes stream through s in chunks cut at the given points and
// collects copies of the frames.
func feedAll(t testing.TB, s *proto.Stream, stream []byte, cuts []int) [][]byte {
	var got [][]byte
	start := 0
	for _, end := range append(cuts, len(stream)) {
		// Each chunk gets its own buffer, overwritten after use, to catch
		// frames that still alias a released chunk.
		chunk := append([]byte{}, stream[start:end]...)
		if err := s.Feed(chunk); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := s.Next()
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if f == nil {
				break
			}
			got = append(got, append([]byte{}, f...))
		}
		for i := range chunk {
			chunk[i] = 0xEE
		}
		start = end
	}
	return got
}

func TestStreamArbitraryBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	stream, frames := streamOf(t, 50, rng)
	for trial := range 200 {
		var cuts []int
		pos := 0
		for {
			step := 1 + rng.IntN(1+trial%7*60)
			pos += step
			if pos >= len(stream) {
				break
			}
			cuts = append(cuts, pos)
		}
		s := proto.NewStream(make([]byte, 400))
		got := feedAll(t, s, stream, cuts)
		if len(got) != len(frames) {
			t.Fatalf("trial %d: %d frames, want %d", trial, len(got), len(frames))
		}
		for i := range got {
			if !bytes.Equal(got[i], frames[i]) {
				t.Fatalf("trial %d: frame %d differs", trial, i)
			}
		}
		if s.Buffered() != 0 {
			t.Fatalf("trial %d: %d bytes left buffered", trial, s.Buffered())
		}
	}
}

func TestStreamOneByteAtATime(t *testing.T) {
	stream, frames := streamOf(t, 5, rand.New(rand.NewPCG(3, 4)))
	cuts := make([]int, 0, len(stream))
	for i := 1; i < len(stream); i++ {
		cuts = append(cuts, i)
	}
	got := feedAll(t, proto.NewStream(make([]byte, proto.MaxFrameLen)), stream, cuts)
	if len(got) != len(frames) {
		t.Fatalf("%d frames, want %d", len(got), len(frames))
	}
}

func TestStreamFrameTooLarge(t *testing.T) {
	buf := make([]byte, 1000)
	f, _ := proto.EncodeRequest(buf, 31, 5, 0, make([]byte, 200))
	for _, split := range []int{len(f), 10, 30} { // whole, header split, payload split
		s := proto.NewStream(make([]byte, 100))
		s.Feed(f[:split])
		hdr, err := s.Next()
		if split < proto.HeaderLen {
			if hdr != nil || err != nil {
				t.Fatalf("split %d: first Next = %v, %v", split, hdr, err)
			}
			s.Feed(f[split:])
			hdr, err = s.Next()
		}
		if !errors.Is(err, proto.ErrFrameTooLarge) || !errors.Is(err, proto.ErrDrop) {
			t.Fatalf("split %d: err = %v", split, err)
		}
		if len(hdr) != proto.HeaderLen || hdr.RequestID() != 31 {
			t.Fatalf("split %d: header view %x", split, []byte(hdr))
		}
		if _, err := s.Next(); err != proto.ErrFrameTooLarge {
			t.Fatalf("split %d: error not sticky: %v", split, err)
		}
	}
}

func TestStreamLostSync(t *testing.T) {
	s := proto.NewStream(make([]byte, 100))
	s.Feed([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if _, err := s.Next(); err != proto.ErrMagic {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Next(); err != proto.ErrMagic {
		t.Fatalf("not sticky: %v", err)
	}
}

func TestStreamBadFrameContinues(t *testing.T) {
	buf := make([]byte, 100)
	bad := header(0x47574952, 1, 0, 9, 5, 1, 0, 0) // unknown kind: BAD_FRAME
	good, _ := proto.EncodePing(buf, 6)
	s := proto.NewStream(make([]byte, 100))
	s.Feed(append(bad, good...))
	hdr, err := s.Next()
	if !errors.Is(err, proto.ErrKind) || !errors.Is(err, proto.ErrBadFrame) || hdr.RequestID() != 5 {
		t.Fatalf("bad frame: %v, %x", err, []byte(hdr))
	}
	f, err := s.Next()
	if err != nil || f.Kind() != proto.KindPing || f.RequestID() != 6 {
		t.Fatalf("next frame: %v, %v", f, err)
	}
	if err := s.Feed([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Feed([]byte{1}); err != proto.ErrStreamBusy {
		t.Fatalf("Feed before consuming: %v", err)
	}
}

func TestStreamReader(t *testing.T) {
	stream, frames := streamOf(t, 30, rand.New(rand.NewPCG(5, 6)))
	readers := map[string]io.Reader{
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(stream)),
		"timeouts": iotest.TimeoutReader(bytes.NewReader(stream)),
		"plain":    bytes.NewReader(stream),
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			sr := proto.NewStreamReader(r, make([]byte, 400), make([]byte, 97))
			for i := 0; ; i++ {
				f, err := sr.Next()
				if name == "timeouts" && errors.Is(err, iotest.ErrTimeout) {
					return // TimeoutReader fails its second Read by design
				}
				if err == io.EOF {
					if i != len(frames) {
						t.Fatalf("EOF after %d frames, want %d", i, len(frames))
					}
					return
				}
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !bytes.Equal(f, frames[i]) {
					t.Fatalf("frame %d differs", i)
				}
			}
		})
	}
	sr := proto.NewStreamReader(bytes.NewReader(stream[:len(stream)-1]), make([]byte, 400), make([]byte, 64))
	var err error
	for err == nil {
		_, err = sr.Next()
	}
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated stream: %v", err)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestStreamReaderNoProgress(t *testing.T) {
	sr := proto.NewStreamReader(emptyReader{}, make([]byte, 100), make([]byte, 100))
	if _, err := sr.Next(); err != io.ErrNoProgress {
		t.Fatalf("err = %v", err)
	}
}

// TestStreamRawSealed: for a sealed frame Next gives the header view and
// proto.ErrSealed (as Parse does); Raw gives the whole frame as received, in
// the chunk or straddling two.
func TestStreamRawSealed(t *testing.T) {
	plain, err := proto.EncodeRequest(make([]byte, 64), 9, proto.MethodID("kv.Store/Get"), 0, []byte{8, 1})
	if err != nil {
		t.Fatal(err)
	}
	// A frame with SEALED and room for the seal prefix and tag (the
	// ciphertext is not looked at here).
	sealed := make([]byte, len(plain)+proto.SealedOverhead)
	copy(sealed, plain[:proto.HeaderLen])
	binary.BigEndian.PutUint16(sealed[5:], uint16(len(sealed)-proto.HeaderLen))
	binary.BigEndian.PutUint16(sealed[22:], uint16(proto.FlagSealed))
	proto.PutSealPrefix(sealed, 0x100001, 0, 5)
	stream := append(append([]byte(nil), plain...), sealed...)
	for _, cut := range []int{len(stream), len(plain) + 10} {
		s := proto.NewStream(make([]byte, 256))
		var raws [][]byte
		var errs []error
		for _, chunk := range [][]byte{stream[:cut], stream[cut:]} {
			s.Feed(chunk)
			for {
				f, err := s.Next()
				if f == nil && err == nil {
					break
				}
				raws, errs = append(raws, append([]byte(nil), s.Raw()...)), append(errs, err)
			}
		}
		if len(raws) != 2 || errs[0] != nil || !errors.Is(errs[1], proto.ErrSealed) {
			t.Fatalf("cut %d: %d frames, errors %v", cut, len(raws), errs)
		}
		if !bytes.Equal(raws[0], plain) || !bytes.Equal(raws[1], sealed) {
			t.Fatalf("cut %d: Raw gave % x and % x", cut, raws[0], raws[1])
		}
	}
}
