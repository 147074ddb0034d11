package identity_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// miniServer is what the runtime's server loop does with a ServerSealer,
// over a real UDP socket: the reference for wiring the hook. The handler
// answers with the caller's SPIFFE ID.
func miniServer(t *testing.T, conn *net.UDPConn, sealer runtime.ServerSealer) {
	loop := sealer.Loop(0)
	head, tail := sealer.Room()
	in := make([]byte, 2048)
	out := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(in)
		if err != nil {
			return // closed
		}
		frame, perr := proto.Parse(in[:n])
		var peer runtime.PeerIdentity
		if errors.Is(perr, proto.ErrSealed) {
			plain, p, err := loop.OpenRequest(in[:n], from)
			if err != nil {
				continue // dropped; the sealer counted the reason
			}
			peer = p
			frame, perr = proto.Parse(plain)
		}
		if perr != nil || frame.Kind() != proto.KindRequest {
			continue
		}
		if !peer.Sealed() && sealer.Mode() == runtime.SealStrict {
			r, _ := proto.EncodeError(out, frame.RequestID(), frame.MethodID(), proto.StatusDenied, "sealed frames required")
			_, _ = conn.WriteToUDPAddrPort(r, from)
			continue
		}
		// The handler writes its reply leaving head bytes in front and
		// tail bytes behind, as Room asked.
		r, err := proto.EncodeResponse(out[head:len(out)-tail], frame.RequestID(), frame.MethodID(), proto.StatusOK, append([]byte{0x0a, byte(len(peer.ID))}, peer.ID...))
		if err != nil {
			t.Error(err)
			return
		}
		reply := []byte(r)
		if peer.Sealed() {
			if reply, err = loop.SealReply(out, head, head+len(r), peer); err != nil {
				continue
			}
		}
		_, _ = conn.WriteToUDPAddrPort(reply, from)
	}
}

// TestHookEndToEnd wires Server and Client the way runtime would, over
// loopback UDP after a real handshake: concurrent Prepares share one
// handshake, a sealed call reaches the handler with the caller's SPIFFE
// ID and its reply opens with the server's; an unsealed call to a strict
// server is DENIED; a permissive server serves it without an identity.
func TestHookEndToEnd(t *testing.T) {
	for _, mode := range []runtime.SealMode{runtime.SealStrict, runtime.SealPermissive} {
		t.Run(mode.String(), func(t *testing.T) {
			w := newWorld(t, nil, "spiffe://"+td+"/ns/shop/sa/web")
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); miniServer(t, conn, identity.NewServer(w.serverT, mode)) }()
			t.Cleanup(func() { conn.Close(); wg.Wait() })
			data := conn.LocalAddr().(*net.UDPAddr).AddrPort()

			cfg := w.client(t, validFor(t, w.ca, "spiffe://"+td+"/ns/shop/sa/web"), "spiffe://"+td+"/ns/shop/sa/kv")
			cfg.HandshakePort = w.data.Port()
			cl, err := identity.NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var pwg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				pwg.Add(1)
				go func() { defer pwg.Done(); errs <- cl.Prepare(context.Background(), data) }()
			}
			pwg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := cfg.Table.Stats(time.Now()).Handshakes; n != 1 || cfg.Table.Len() != 1 {
				t.Fatalf("8 concurrent Prepares made %d handshakes", n)
			}

			sock, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(data))
			if err != nil {
				t.Fatal(err)
			}
			defer sock.Close()
			call := func(req []byte) []byte {
				t.Helper()
				if _, err := sock.Write(req); err != nil {
					t.Fatal(err)
				}
				_ = sock.SetReadDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, 2048)
				n, err := sock.Read(b)
				if err != nil {
					t.Fatal(err)
				}
				return b[:n]
			}
			loop := cl.Loop(0)
			plain, _ := proto.EncodeRequest(make([]byte, 64), 1, proto.MethodID("kv.Store/Who"), 0, nil)
			for attempt := range 2 { // a retransmission is sealed anew and served again
				sealed, err := loop.SealRequest(make([]byte, 0, len(plain)+cl.Overhead()), plain, data)
				if err != nil {
					t.Fatal(err)
				}
				reply := call(sealed)
				if _, err := proto.Parse(reply); !errors.Is(err, proto.ErrSealed) {
					t.Fatalf("attempt %d: reply not sealed: %v", attempt, err)
				}
				rp, peer, err := loop.OpenReply(reply, data)
				if err != nil {
					t.Fatal(err)
				}
				f, err := proto.Parse(rp)
				if err != nil {
					t.Fatal(err)
				}
				if got := string(f.Payload()[2:]); got != "spiffe://"+td+"/ns/shop/sa/web" || peer.ID != "spiffe://"+td+"/ns/shop/sa/kv" {
					t.Fatalf("handler saw %q, client saw server %q", got, peer.ID)
				}
			}
			// Unsealed.
			f, err := proto.Parse(call(plain))
			if err != nil {
				t.Fatal(err)
			}
			switch mode {
			case runtime.SealStrict:
				if f.Status() != proto.StatusDenied {
					t.Fatalf("strict server answered an unsealed call with %v", f.Status())
				}
			case runtime.SealPermissive:
				if f.Status() != proto.StatusOK || len(f.Payload()) != 2 {
					t.Fatalf("permissive server answered %v with payload %x", f.Status(), f.Payload())
				}
			}
		})
	}
}
