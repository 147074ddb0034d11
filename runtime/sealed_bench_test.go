package runtime_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
)

// sealedPair is a server's session table with a handshake listener on
// loopback and a client that completed a handshake with it; data is the
// server's "data address" the client's session is keyed by (the
// listener's own, so HandshakePort 0 finds it).
func sealedPair(tb testing.TB) (*identity.Table, *identity.Client, netip.AddrPort) {
	tb.Helper()
	ca, err := identitytest.NewCA(sealTD)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := identity.NewTable(identity.TableConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := identity.Listen(netip.MustParseAddrPort("127.0.0.1:0"), &identity.Config{Source: mustSVIDFor(tb, ca, idKV),
		Allow: identity.AllowTrustDomain(ca.TrustDomain), Table: st, Logger: discard()})
	if err != nil {
		tb.Fatal(err)
	}
	go ln.Serve()
	tb.Cleanup(func() { ln.Close() })
	ct, err := identity.NewTable(identity.TableConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	cl, err := identity.NewClient(&identity.Config{Source: mustSVIDFor(tb, ca, idWeb), Allow: identity.MustMatcher(idKV),
		Table: ct, Logger: discard()})
	if err != nil {
		tb.Fatal(err)
	}
	data := ln.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Prepare(ctx, data); err != nil {
		tb.Fatal(err)
	}
	return st, cl, data
}

// BenchmarkSealedDispatch is the request path of a strict server with a
// sealer, per request: the client seals an Echo request (64 or 1,400
// bytes of payload), the server's dispatcher opens it in place, runs the
// handler and seals the reply in the reply buffer, and the client opens
// the reply: the whole CPU cost of sealing one call on both sides, without
// the network. BenchmarkDispatch/Echo is the same path unsealed.
func BenchmarkSealedDispatch(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			st, cl, data := sealedPair(b)
			dispatch := zr.DispatchForTest(b, zr.WithSealer(identity.NewServer(st, zr.SealStrict)))
			cs := cl.Loop(0)
			plain, err := proto.EncodeRequest(make([]byte, proto.HeaderLen+size), 1, proto.MethodID(echo.EchoMethod), 0, echoPayload(size))
			if err != nil {
				b.Fatal(err)
			}
			in := make([]byte, 0, len(plain)+cl.Overhead())
			out := make([]byte, 4096)
			peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40000)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				req, err := cs.SealRequest(in[:0], plain, data)
				if err != nil {
					b.Fatal(err)
				}
				reply := dispatch(req, peer, out)
				if reply == nil {
					b.Fatal("no reply")
				}
				if _, _, err := cs.OpenReply(reply, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// echoPayload is n bytes of protobuf: field 1, bytes.
func echoPayload(n int) []byte {
	p := []byte{0x0a}
	body := n - 1 - 2
	if body < 128 {
		body = n - 2
		return append(append(p, byte(body)), make([]byte, body)...)
	}
	return append(append(p, byte(body&0x7f|0x80), byte(body>>7)), make([]byte, body)...)
}

// TestSealedDispatchAllocatesNothing: opening a sealed request, serving it
// and sealing its reply allocate nothing, nor does refusing a replay.
func TestSealedDispatchAllocatesNothing(t *testing.T) {
	if zr.RaceEnabled {
		t.Skip("allocation counts do not hold under the race detector")
	}
	st, cl, data := sealedPair(t)
	dispatch := zr.DispatchForTest(t, zr.WithSealer(identity.NewServer(st, zr.SealStrict)))
	cs := cl.Loop(0)
	plain, _ := proto.EncodeRequest(make([]byte, 128), 1, proto.MethodID(echo.EchoMethod), 0, echoPayload(64))
	in := make([]byte, 0, 256)
	replay := make([]byte, 0, 256)
	out := make([]byte, 4096)
	peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40000)
	call := func() {
		req, err := cs.SealRequest(in[:0], plain, data)
		if err != nil {
			t.Fatal(err)
		}
		replay = append(replay[:0], req...)
		reply := dispatch(req, peer, out)
		if reply == nil {
			t.Fatal("no reply")
		}
		if _, _, err := cs.OpenReply(reply, data); err != nil {
			t.Fatal(err)
		}
		if dispatch(replay, peer, out) != nil {
			t.Fatal("a replay was answered")
		}
	}
	call()
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Fatalf("%.2f allocations per sealed call and replay", n)
	}
}

// TestSealedCallAllocs: a sealed Call with a caller-provided buffer
// allocates nothing once the session exists (Prepare returns at once).
func TestSealedCallAllocs(t *testing.T) {
	if zr.RaceEnabled {
		t.Skip("allocation counts do not hold under the race detector")
	}
	w := newSealWorld(t, "uring", sealOptions{mode: zr.SealStrict})
	cl, _ := w.identityClient(t, w.ca, idWeb, identity.TableConfig{})
	c := w.dial(t, "udp", cl)
	ctx := context.Background()
	payload := []byte{8, 42}
	buf := make([]byte, 0, 64)
	call := func() {
		if _, err := c.Call(ctx, echo.EchoMethod, payload, buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		call()
	}
	if n := testing.AllocsPerRun(1000, call); n > 0 {
		t.Errorf("a sealed Call allocates %.2f times per round trip, want 0", n)
	}
	if st := w.srv.Stats().Total; st.Sealed < 1100 {
		t.Fatalf("only %d calls came sealed", st.Sealed)
	}
}
