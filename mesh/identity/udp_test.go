package identity_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/proto"
)

// TestSealedOverUDP runs the data path over real loopback UDP sockets
// after a real handshake: sealed requests reach the server and open with
// the client's SPIFFE ID; a captured datagram sent again is refused as a
// replay; the same datagram sent from another source address (127.0.0.2,
// local on Linux's loopback) is refused as a spoofed source; a datagram
// with a flipped bit is refused as forged. No root needed.
func TestSealedOverUDP(t *testing.T) {
	w := newWorld(t, nil, "spiffe://"+td+"/ns/shop/sa/web")
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	data := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg := w.client(t, validFor(t, w.ca, "spiffe://"+td+"/ns/shop/sa/web"), "spiffe://"+td+"/ns/shop/sa/kv")
	cfg.HandshakePort = w.data.Port() // the listener is not on the data port number here
	cs, err := identity.Dial(context.Background(), data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(data))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	spoof, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, net.UDPAddrFromAddrPort(data))
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2 on this host's loopback: %v", err)
	}
	defer spoof.Close()

	sealer := cfg.Table.NewSealer()
	opener := w.serverT.NewSealer()
	buf := make([]byte, 256)
	plain, err := proto.EncodeRequest(buf[:128], 77, proto.MethodID("kv.Store/Get"), 0, []byte{0x0a, 0x02, 'h', 'i'})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := sealer.SealTo(buf[128:], plain, cs)
	if err != nil {
		t.Fatal(err)
	}
	capture := append([]byte{}, sealed...)

	recv := func() ([]byte, netip.AddrPort) {
		t.Helper()
		_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2048)
		n, from, err := srv.ReadFromUDPAddrPort(b)
		if err != nil {
			t.Fatal(err)
		}
		return b[:n], from
	}
	open := func(b []byte, from netip.AddrPort) ([]byte, *identity.Session, error) {
		return opener.Open(b, from.Addr())
	}
	send := func(c *net.UDPConn, b []byte) {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}

	// The genuine datagram.
	send(cli, capture)
	b, from := recv()
	got, ss, err := open(b, from)
	if err != nil {
		t.Fatal(err)
	}
	if ss.PeerString() != "spiffe://"+td+"/ns/shop/sa/web" || !bytes.Equal(got, plain) {
		t.Fatalf("opened %x from %s", got, ss.PeerString())
	}
	// Replayed from the same address.
	send(cli, capture)
	b, from = recv()
	if _, _, err := open(b, from); !errors.Is(err, identity.ReasonReplay) {
		t.Fatalf("replay: %v", err)
	}
	// A fresh sealed datagram (not yet seen, so not a replay) sent from a
	// spoofed source address.
	fresh, err := sealer.SealTo(make([]byte, 256), plain, cs)
	if err != nil {
		t.Fatal(err)
	}
	send(spoof, fresh)
	b, from = recv()
	if from.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("spoofed datagram arrived from %s", from)
	}
	if _, _, err := open(b, from); !errors.Is(err, identity.ReasonAddress) {
		t.Fatalf("spoofed source: %v", err)
	}
	// A bit flipped in the ciphertext.
	forged, _ := sealer.SealTo(make([]byte, 256), plain, cs)
	forged[len(forged)-20] ^= 0x10
	send(cli, forged)
	b, from = recv()
	if _, _, err := open(b, from); !errors.Is(err, identity.ReasonAuth) {
		t.Fatalf("forged: %v", err)
	}
	st := w.serverT.Stats(time.Now())
	if st.Refused[identity.ReasonReplay] != 1 || st.Refused[identity.ReasonAddress] != 1 || st.Refused[identity.ReasonAuth] != 1 {
		t.Fatalf("refusals counted: %v", st.Refused)
	}
	if len(st.Sessions) != 1 || st.Sessions[0].Opened != 1 || st.Sessions[0].Replays != 1 || st.Sessions[0].AuthFailures != 1 {
		t.Fatalf("session stats %+v", st.Sessions)
	}
	var out bytes.Buffer
	if err := st.Format(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"spiffe://" + td + "/ns/shop/sa/web", "refused replay: 1", "refused address: 1", "refused auth: 1"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Fatalf("stat output lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("zerohop stat:\n%s", out.String())
}
