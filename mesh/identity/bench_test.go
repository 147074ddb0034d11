package identity

import (
	"testing"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// BenchmarkSealOpen seals a request in place and opens it again, per
// frame size and suite: the data-path cost of sealed frames. The frame is
// re-encoded header-only each round (24 bytes), so the payload is sealed
// from ciphertext, which costs the same.
func BenchmarkSealOpen(b *testing.B) {
	for _, suite := range suites {
		for _, size := range []int{64, 1400} {
			b.Run(suite.String()+"/"+itoa(size)+"B", func(b *testing.B) {
				benchSealOpen(b, suite, size, true)
			})
		}
	}
}

// BenchmarkSeal is the sealing half alone.
func BenchmarkSeal(b *testing.B) {
	for _, suite := range suites {
		for _, size := range []int{64, 1400} {
			b.Run(suite.String()+"/"+itoa(size)+"B", func(b *testing.B) {
				benchSealOpen(b, suite, size, false)
			})
		}
	}
}

func benchSealOpen(b *testing.B, suite Suite, size int, open bool) {
	p := newPair(b, suite, TableConfig{KeyPackets: 1 << 23})
	cs, ss := p.ct.NewSealer(), p.st.NewSealer()
	buf := make([]byte, proto.SealedPrefixLen+size+proto.SealedTagLen)
	frame := buf[proto.SealedPrefixLen : proto.SealedPrefixLen+size]
	hdr, err := proto.EncodeRequest(make([]byte, size), 1, proto.MethodID("kv.Store/Get"), 0, make([]byte, size-proto.HeaderLen))
	if err != nil {
		b.Fatal(err)
	}
	hdr = hdr[:proto.HeaderLen]
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		copy(frame, hdr)
		f, err := cs.Seal(buf, proto.SealedPrefixLen, proto.SealedPrefixLen+size, p.c)
		if err != nil {
			b.Fatal(err)
		}
		if open {
			if _, _, err := ss.Open(f, clientAddr); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// BenchmarkAEAD is the AEAD's Seal alone on the same sizes, the floor
// BenchmarkSeal is compared with in the same run.
func BenchmarkAEAD(b *testing.B) {
	for _, suite := range suites {
		for _, size := range []int{64, 1400} {
			b.Run(suite.String()+"/"+itoa(size)+"B", func(b *testing.B) {
				a, err := newAEAD(suite, make([]byte, suite.keyLen()))
				if err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, size+16)
				nonce := make([]byte, 12)
				body := buf[proto.SealedHeaderLen:size]
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for range b.N {
					a.Seal(body[:0], nonce, body, buf[:proto.SealedHeaderLen])
				}
			})
		}
	}
}

// BenchmarkHookServer is one request's worth of the runtime hook on a
// server loop: OpenRequest of a sealed 64-byte request, SealReply of a
// 64-byte reply, through the interfaces runtime would hold. Each round
// also seals the request on the client side (SealTo), since a sealed
// frame opens only once; subtract BenchmarkSeal's 64-byte figure for the
// server's share.
func BenchmarkHookServer(b *testing.B) {
	p := newPair(b, HardwareSuite(), TableConfig{})
	var srv runtime.ServerSealer = NewServer(p.st, runtime.SealStrict)
	loop := srv.Loop(0)
	cs := p.ct.NewSealer()
	const size = 64
	plain, err := proto.EncodeRequest(make([]byte, size), 1, 7, 0, make([]byte, size-proto.HeaderLen))
	if err != nil {
		b.Fatal(err)
	}
	in := make([]byte, size+proto.SealedOverhead)
	out := make([]byte, proto.SealedPrefixLen+size+proto.SealedTagLen)
	resp, err := proto.EncodeResponse(make([]byte, size), 1, 7, 0, make([]byte, size-proto.HeaderLen))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f, err := cs.SealTo(in, plain, p.c)
		if err != nil {
			b.Fatal(err)
		}
		_, peer, err := loop.OpenRequest(f, netipAddrPort)
		if err != nil {
			b.Fatal(err)
		}
		copy(out[proto.SealedPrefixLen:], resp)
		if _, err := loop.SealReply(out, proto.SealedPrefixLen, proto.SealedPrefixLen+size, peer); err != nil {
			b.Fatal(err)
		}
	}
}
