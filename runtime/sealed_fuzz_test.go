package runtime_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
)

// FuzzSealedDispatch drives a strict server's request path with a freshly
// sealed Echo request (payload from the input) XORed with a mask and cut
// to a length (both from the input). An untouched frame must be served
// and its reply must open; a frame with any bit changed, or cut short,
// must get no sealed reply (a clear BAD_FRAME or DENIED at most, when the
// change broke the clear header or the SEALED flag) — never a handler's
// answer under the session's keys. Seeds: testdata/fuzz/FuzzSealedDispatch.
func FuzzSealedDispatch(f *testing.F) {
	f.Add([]byte{8, 1}, []byte{}, uint16(0xffff))
	f.Add([]byte{8, 1}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(0xffff)) // request id
	f.Add([]byte("\x0a\x05hello"), make([]byte, 40), uint16(30))           // cut inside the ciphertext
	st, cl, data := sealedPair(f)
	dispatch := zr.DispatchForTest(f, zr.WithSealer(identity.NewServer(st, zr.SealStrict)))
	cs := cl.Loop(0)
	peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40000)
	out := make([]byte, 4096)
	f.Fuzz(func(t *testing.T, payload, mask []byte, cut uint16) {
		if len(payload) > 1024 {
			payload = payload[:1024]
		}
		plain, err := proto.EncodeRequest(make([]byte, proto.HeaderLen+len(payload)), 7, proto.MethodID(echo.EchoMethod), 0, payload)
		if err != nil {
			t.Skip()
		}
		frame, err := cs.SealRequest(make([]byte, 0, len(plain)+cl.Overhead()), plain, data)
		if err != nil {
			t.Fatal(err)
		}
		changed := false
		for i := 0; i < len(mask) && i < len(frame); i++ {
			frame[i] ^= mask[i]
			changed = changed || mask[i] != 0
		}
		if int(cut) < len(frame) {
			frame, changed = frame[:cut], true
		}
		reply := dispatch(frame, peer, out)
		if reply == nil {
			if !changed {
				t.Fatalf("a valid sealed request (%d bytes) got no reply", len(frame))
			}
			return
		}
		rf, perr := proto.Parse(reply)
		if perr == nil {
			if !changed || (rf.Status() != proto.StatusBadFrame && rf.Status() != proto.StatusDenied) {
				t.Fatalf("a clear reply %v to a request that was changed: %v", rf.Status(), changed)
			}
			return
		}
		if !errors.Is(perr, proto.ErrSealed) {
			t.Fatalf("a reply that does not parse: %v", perr)
		}
		if changed {
			t.Fatalf("a changed frame (mask % x, cut %d) got a sealed reply", mask, cut)
		}
		opened, _, err := cs.OpenReply(reply, data)
		if err != nil {
			t.Fatalf("the reply to a valid request does not open: %v", err)
		}
		if f, err := proto.Parse(opened); err != nil || f.Status() != proto.StatusOK || string(f.Payload()) != string(payload) {
			t.Fatalf("opened reply %v %v % x, want OK echoing % x", f.Status(), err, f.Payload(), payload)
		}
	})
}
