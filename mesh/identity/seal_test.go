package identity

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

func TestSealOpenRoundTrip(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			p := newPair(t, suite, TableConfig{})
			cs, ss := p.ct.NewSealer(), p.st.NewSealer()
			var x proto.ExtBuilder
			x.SetDeadline(250 * time.Millisecond)
			x.SetCaller([]byte("web"))
			for i, payload := range [][]byte{nil, {0x0a, 0x07, 'u', 's', 'e', 'r', ':', '4', '2'}, bytes.Repeat([]byte{0x0a, 0x02, 1, 2}, 350)} {
				for _, xb := range []*proto.ExtBuilder{nil, &x} {
					buf, start, end := request(t, uint64(i+1), xb, payload)
					want := append([]byte{}, buf[start:end]...)
					sealed, err := cs.Seal(buf, start, end, p.c)
					if err != nil {
						t.Fatal(err)
					}
					if len(sealed) != len(want)+proto.SealedOverhead {
						t.Fatalf("sealed %d bytes from %d", len(sealed), len(want))
					}
					// The clear header carries the routing fields and
					// FlagSealed; the payload is not readable.
					h := proto.Frame(sealed)
					if h.RequestID() != uint64(i+1) || !h.Sealed() || h.SessionID() != p.s.LocalID() {
						t.Fatalf("clear header id %d sealed %v sid %#x", h.RequestID(), h.Sealed(), h.SessionID())
					}
					if len(payload) > 8 && bytes.Contains(sealed, payload[:8]) {
						t.Fatal("payload readable in the sealed frame")
					}
					plain, sess, err := ss.Open(sealed, clientAddr)
					if err != nil {
						t.Fatal(err)
					}
					if sess != p.s || sess.PeerString() != clientSPI.String() {
						t.Fatalf("opened on session %v peer %q", sess, sess.PeerString())
					}
					if !bytes.Equal(plain, want) {
						t.Fatalf("opened\n%x\nwant\n%x", plain, want)
					}
					if _, err := proto.Parse(plain); err != nil {
						t.Fatalf("opened frame does not parse: %v", err)
					}
				}
			}
			// A reply: encoded at an offset, sealed in place by the server,
			// opened by the client.
			buf := make([]byte, 256)
			f, err := proto.EncodeResponse(buf[proto.SealedPrefixLen:], 9, 7, proto.StatusOK, []byte{0x0a, 0x01, 'x'})
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte{}, f...)
			sealed, err := ss.Seal(buf, proto.SealedPrefixLen, proto.SealedPrefixLen+len(f), p.s)
			if err != nil {
				t.Fatal(err)
			}
			plain, _, err := cs.Open(sealed, serverAddr.Addr())
			if err != nil || !bytes.Equal(plain, want) {
				t.Fatalf("reply opened to %x, %v; want %x", plain, err, want)
			}
		})
	}
}

func TestSealToKeepsThePlaintext(t *testing.T) {
	p := newPair(t, SuiteAES128GCM, TableConfig{})
	cs, ss := p.ct.NewSealer(), p.st.NewSealer()
	plain, err := proto.EncodeRequest(make([]byte, 64), 5, 7, 0, []byte{0x08, 0x01})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{}, plain...)
	dst := make([]byte, 128)
	var pns []uint64
	for range 2 { // a transmission and a retransmission
		sealed, err := cs.SealTo(dst, plain, p.c)
		if err != nil {
			t.Fatal(err)
		}
		pns = append(pns, proto.Frame(sealed).PacketNumber())
		got, _, err := ss.Open(sealed, clientAddr)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("opened %x, %v", got, err)
		}
		if !bytes.Equal(plain, want) {
			t.Fatal("SealTo changed its input")
		}
	}
	if pns[0] == pns[1] {
		t.Fatal("a retransmission reused the packet number")
	}
}

// sealOne seals a small request on p's client side and returns a copy.
func sealOne(t testing.TB, p *pair, cs *Sealer, id uint64) []byte {
	t.Helper()
	buf, start, end := request(t, id, nil, []byte{0x08, byte(id)})
	sealed, err := cs.Seal(buf, start, end, p.c)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{}, sealed...)
}

func wantReason(t *testing.T, err error, r Reason) {
	t.Helper()
	var got Reason
	if !errors.As(err, &got) || got != r {
		t.Fatalf("error %v, want %v (%s)", err, r, r.String())
	}
}

func TestOpenRefuses(t *testing.T) {
	p := newPair(t, SuiteChaCha20Poly1305, TableConfig{})
	cs, ss := p.ct.NewSealer(), p.st.NewSealer()

	t.Run("replay", func(t *testing.T) {
		f := sealOne(t, p, cs, 1)
		if _, _, err := ss.Open(append([]byte{}, f...), clientAddr); err != nil {
			t.Fatal(err)
		}
		_, _, err := ss.Open(f, clientAddr)
		wantReason(t, err, ReasonReplay)
		if p.s.replays.Load() != 1 {
			t.Fatalf("session counted %d replays", p.s.replays.Load())
		}
	})
	t.Run("spoofed source", func(t *testing.T) {
		f := sealOne(t, p, cs, 2)
		_, _, err := ss.Open(append([]byte{}, f...), netip4(10, 9, 9, 9))
		wantReason(t, err, ReasonAddress)
		// The refusal did not burn the packet number: from the right
		// address it still opens.
		if _, _, err := ss.Open(f, clientAddr); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		f := sealOne(t, p, cs, 3)
		proto.PutSealPrefix(f, p.s.LocalID()^1<<25, 0, proto.Frame(f).PacketNumber())
		_, _, err := ss.Open(f, clientAddr)
		wantReason(t, err, ReasonUnknownSession)
	})
	t.Run("direction", func(t *testing.T) {
		// A request the client sealed, reflected back at the client.
		f := sealOne(t, p, cs, 4)
		proto.PutSealPrefix(f, p.c.LocalID(), 0, proto.Frame(f).PacketNumber())
		_, _, err := cs.Open(f, serverAddr.Addr())
		wantReason(t, err, ReasonDirection)
	})
	t.Run("header", func(t *testing.T) {
		_, _, err := ss.Open([]byte("GWIR\x01 not a frame at all"), clientAddr)
		wantReason(t, err, ReasonHeader)
	})
	t.Run("too old", func(t *testing.T) {
		old := sealOne(t, p, cs, 5)
		for i := range ReplayWindow + 1 {
			if _, _, err := ss.Open(sealOne(t, p, cs, uint64(i)), clientAddr); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := ss.Open(old, clientAddr)
		wantReason(t, err, ReasonTooOld)
	})
	t.Run("closed session", func(t *testing.T) {
		q := newPair(t, SuiteAES128GCM, TableConfig{})
		qc, qs := q.ct.NewSealer(), q.st.NewSealer()
		f := sealOne(t, q, qc, 1)
		q.s.Close()
		_, _, err := qs.Open(f, clientAddr)
		wantReason(t, err, ReasonUnknownSession)
		_, err = qc.Seal(make([]byte, 100), 12, 36, nil)
		wantReason(t, err, ReasonNoSession)
	})
	t.Run("no room", func(t *testing.T) {
		buf, start, end := request(t, 1, nil, nil)
		_, err := cs.Seal(buf, 4, end, p.c)
		wantReason(t, err, ReasonRoom)
		_, err = cs.Seal(buf[:end:end], start, end, p.c)
		wantReason(t, err, ReasonRoom)
	})
	t.Run("wrong kind to seal", func(t *testing.T) {
		buf := make([]byte, 100)
		f, _ := proto.EncodeResponse(buf[12:], 1, 7, 0, nil)
		before := append([]byte{}, buf...)
		_, err := cs.Seal(buf, 12, 12+len(f), p.c)
		wantReason(t, err, ReasonDirection)
		if !bytes.Equal(buf, before) {
			t.Fatal("a refused Seal changed the buffer")
		}
	})
	// Every refusal above is in the sealers' counters.
	st := p.st.Stats(time.Now())
	if st.Refused[ReasonReplay] != 1 || st.Refused[ReasonAddress] != 1 || st.Refused[ReasonTooOld] != 1 || st.Refused[ReasonHeader] != 1 {
		t.Fatalf("server counted %v", st.Refused)
	}
}

func netip4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

// TestOpenRefusesEveryBitFlip flips each bit of a sealed frame, and cuts
// it at every length: none may open (and none may panic).
func TestOpenRefusesEveryBitFlip(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			p := newPair(t, suite, TableConfig{})
			cs, ss := p.ct.NewSealer(), p.st.NewSealer()
			var x proto.ExtBuilder
			x.SetDeadline(time.Second)
			buf, start, end := request(t, 77, &x, []byte{0x0a, 0x03, 'a', 'b', 'c'})
			sealed, err := cs.Seal(buf, start, end, p.c)
			if err != nil {
				t.Fatal(err)
			}
			orig := append([]byte{}, sealed...)
			for bit := range len(orig) * 8 {
				f := append([]byte{}, orig...)
				f[bit/8] ^= 1 << (bit % 8)
				if plain, _, err := ss.Open(f, clientAddr); err == nil {
					t.Fatalf("bit %d flipped: opened to %x", bit, plain)
				}
			}
			for n := range len(orig) {
				if _, _, err := ss.Open(append([]byte{}, orig[:n]...), clientAddr); err == nil {
					t.Fatalf("cut to %d bytes: opened", n)
				}
			}
			// The untouched frame still opens: the refusals did not burn
			// its packet number.
			if _, _, err := ss.Open(orig, clientAddr); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReplayWindowAgainstModel drives the window with packet numbers in a
// shuffled order and compares every verdict with a map of what was seen.
func TestReplayWindowAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var w replayWindow
	seen := map[uint64]bool{}
	var top uint64
	any := false
	base := uint64(0)
	for range 200000 {
		var pn uint64
		switch rng.IntN(4) {
		case 0: // a repeat
			pn = base + uint64(rng.IntN(3000))
		case 1: // a jump ahead
			base += uint64(rng.IntN(5000))
			pn = base
		default: // near the front, reordered
			pn = base + uint64(rng.IntN(200))
			base++
		}
		var want Reason
		switch {
		case any && pn <= top && top-pn >= ReplayWindow:
			want = ReasonTooOld
		case seen[pn]:
			want = ReasonReplay
		}
		if got := w.check(pn); got != want {
			t.Fatalf("check(%d) with top %d = %v, want %v", pn, top, got, want)
		}
		if got := w.update(pn); got != want {
			t.Fatalf("update(%d) with top %d = %v, want %v", pn, top, got, want)
		}
		if want == 0 {
			seen[pn] = true
			if !any || pn > top {
				top = pn
			}
			any = true
		}
	}
}

// TestKeyUpdate seals across several key updates with frames delivered
// out of order around each update: the previous key opens late frames
// during its grace window, and after it they are refused.
func TestKeyUpdate(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			const perKey = MinKeyPackets
			p := newPair(t, suite, TableConfig{KeyPackets: perKey, KeyGrace: time.Minute})
			cs, ss := p.ct.NewSealer(), p.st.NewSealer()
			var held [][]byte
			for i := range 6 * perKey {
				f := sealOne(t, p, cs, uint64(i))
				if i%perKey == perKey-3 {
					held = append(held, f) // delivered after the next update
					continue
				}
				if _, _, err := ss.Open(f, clientAddr); err != nil {
					t.Fatalf("frame %d (pn %d phase %d): %v", i, proto.Frame(f).PacketNumber(), proto.Frame(f).KeyPhase(), err)
				}
				if i%perKey == 5 && len(held) > 0 {
					h := held[len(held)-1]
					held = held[:len(held)-1]
					if _, _, err := ss.Open(h, clientAddr); err != nil {
						t.Fatalf("late frame pn %d: %v", proto.Frame(h).PacketNumber(), err)
					}
				}
			}
			if n := p.c.sendRotated.Load(); n != 5 {
				t.Fatalf("%d key updates in %d frames at %d per key, want 5", n, 6*perKey, perKey)
			}
			if p.s.recvRotated.Load() != p.c.sendRotated.Load() {
				t.Fatalf("receiver followed %d of %d updates", p.s.recvRotated.Load(), p.c.sendRotated.Load())
			}
			// The frame that triggers an update is still sealed under the
			// old key: hold it back, let the receiver move to the new key,
			// end the grace window (Maintain past KeyGrace), and it is
			// refused (the earlier held frames show it would have opened
			// within the window).
			var late []byte
			for n := p.c.sendRotated.Load(); p.c.sendRotated.Load() == n; {
				if late != nil {
					if _, _, err := ss.Open(late, clientAddr); err != nil {
						t.Fatal(err)
					}
				}
				late = sealOne(t, p, cs, 1000)
			}
			for range 3 {
				if _, _, err := ss.Open(sealOne(t, p, cs, 1), clientAddr); err != nil {
					t.Fatal(err)
				}
			}
			p.st.Maintain(time.Now().Add(2 * time.Minute))
			_, _, err := ss.Open(late, clientAddr)
			wantReason(t, err, ReasonAuth)
		})
	}
}

func TestKeyUpdateOnTimer(t *testing.T) {
	p := newPair(t, SuiteAES128GCM, TableConfig{KeyLifetime: time.Minute})
	cs, ss := p.ct.NewSealer(), p.st.NewSealer()
	later := time.Now().Add(2 * time.Minute)
	p.ct.Maintain(later)
	if n := p.c.sendRotated.Load(); n != 0 {
		t.Fatalf("a key that sealed nothing was updated (%d)", n)
	}
	for i := range MinKeyPackets - 1 {
		if _, _, err := ss.Open(sealOne(t, p, cs, uint64(i)), clientAddr); err != nil {
			t.Fatal(err)
		}
	}
	p.ct.Maintain(later)
	if n := p.c.sendRotated.Load(); n != 0 {
		t.Fatalf("a key that sealed %d frames was updated (%d)", MinKeyPackets-1, n)
	}
	if _, _, err := ss.Open(sealOne(t, p, cs, 1), clientAddr); err != nil {
		t.Fatal(err)
	}
	p.ct.Maintain(later)
	if n := p.c.sendRotated.Load(); n != 1 {
		t.Fatalf("%d updates after the key lifetime, want 1", n)
	}
	f := sealOne(t, p, cs, 9)
	if proto.Frame(f).KeyPhase() != 1 {
		t.Fatal("key phase did not flip")
	}
	if _, _, err := ss.Open(f, clientAddr); err != nil {
		t.Fatal(err)
	}
	if p.s.recvRotated.Load() != 1 {
		t.Fatal("receiver did not promote")
	}
}

// TestRotationUnderLoad: many goroutines seal requests on one session
// while others open them, through key updates every MinKeyPackets frames and timer
// updates from Maintain; every frame must open exactly once (0 lost), and
// each opened frame must be the request that was sealed.
func TestRotationUnderLoad(t *testing.T) {
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			p := newPair(t, suite, TableConfig{KeyPackets: MinKeyPackets, KeyLifetime: time.Nanosecond})
			const senders, openers, perSender = 8, 4, 12000
			ch := make(chan []byte, 256)
			var wg, owg sync.WaitGroup
			var mu sync.Mutex
			got := map[uint64]bool{}
			errs := make(chan error, openers+senders)
			for range openers {
				owg.Add(1)
				go func() {
					defer owg.Done()
					ss := p.st.NewSealer()
					for f := range ch {
						plain, _, err := ss.Open(f, clientAddr)
						if err != nil {
							errs <- fmt.Errorf("open pn %d phase %d: %w", proto.Frame(f).PacketNumber(), proto.Frame(f).KeyPhase(), err)
							return
						}
						fr, err := proto.Parse(plain)
						if err != nil {
							errs <- err
							return
						}
						id := fr.RequestID()
						if want := []byte{0x08, byte(id), byte(id >> 8), byte(id >> 16)}; !bytes.Equal(fr.Payload(), want) {
							errs <- fmt.Errorf("request %d opened with payload %x", id, fr.Payload())
							return
						}
						mu.Lock()
						dup := got[id]
						got[id] = true
						mu.Unlock()
						if dup {
							errs <- fmt.Errorf("request %d opened twice", id)
							return
						}
					}
				}()
			}
			done := make(chan struct{})
			go func() { // timer-driven updates racing the count-driven ones
				for {
					select {
					case <-done:
						return
					default:
						p.ct.Maintain(time.Now())
						time.Sleep(200 * time.Microsecond)
					}
				}
			}()
			for g := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cs := p.ct.NewSealer()
					for i := range perSender {
						id := uint64(g*perSender + i)
						buf, start, end := request(t, id, nil, []byte{0x08, byte(id), byte(id >> 8), byte(id >> 16)})
						f, err := cs.Seal(buf, start, end, p.c)
						if err != nil {
							errs <- err
							return
						}
						ch <- f
					}
				}()
			}
			wg.Wait()
			close(done)
			close(ch)
			owg.Wait()
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			if len(got) != senders*perSender {
				t.Fatalf("%d of %d requests opened", len(got), senders*perSender)
			}
			if n := p.c.sendRotated.Load(); n < senders*perSender/MinKeyPackets {
				t.Fatalf("only %d key updates", n)
			}
			t.Logf("%d frames, %d key updates sent, %d followed", len(got), p.c.sendRotated.Load(), p.s.recvRotated.Load())
		})
	}
}
