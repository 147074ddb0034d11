package identity_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
	"github.com/zerohop/zerohop/proto"
)

const td = "test.zerohop"

// world is a trust domain with a CA, a server identity and a handshake
// listener on loopback.
type world struct {
	ca       *identitytest.CA
	serverT  *identity.Table
	server   *identity.Listener
	data     netip.AddrPort // the server's "data address": its handshake port, same number
	mu       sync.Mutex
	accepted []error
}

func mustCA(t *testing.T, name string) *identitytest.CA {
	t.Helper()
	ca, err := identitytest.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustSVID(t *testing.T, ca *identitytest.CA, id string, notBefore, notAfter time.Time) *x509svid.SVID {
	t.Helper()
	s, err := ca.Issue(id, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustTable(t *testing.T) *identity.Table {
	t.Helper()
	tb, err := identity.NewTable(identity.TableConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// newWorld starts a server whose SVID is serverSVID (a fresh one when nil)
// allowing allow.
func newWorld(t *testing.T, serverSVID *x509svid.SVID, allow ...string) *world {
	t.Helper()
	return newWorldCA(t, mustCA(t, td), serverSVID, allow...)
}

func newWorldCA(t *testing.T, ca *identitytest.CA, serverSVID *x509svid.SVID, allow ...string) *world {
	t.Helper()
	w := &world{ca: ca}
	if serverSVID == nil {
		serverSVID = mustSVID(t, w.ca, "spiffe://"+td+"/ns/shop/sa/kv", time.Now().Add(-3*time.Hour), time.Now().Add(time.Hour))
	}
	w.serverT = mustTable(t)
	cfg := &identity.Config{
		Source: identitytest.NewSource(serverSVID, w.ca.Bundle()),
		Allow:  identity.MustMatcher(allow...),
		Table:  w.serverT,
		Logger: slog.New(slog.DiscardHandler),
		OnHandshake: func(_ netip.AddrPort, _ *identity.Session, err error) {
			w.mu.Lock()
			w.accepted = append(w.accepted, err)
			w.mu.Unlock()
		},
	}
	l, err := identity.Listen(netip.MustParseAddrPort("127.0.0.1:0"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.server = l
	w.data = l.Addr()
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	return w
}

// serverErr waits (bounded) for the server's verdict on the n-th handshake.
func (w *world) serverErr(t *testing.T, n int) error {
	t.Helper()
	for range 500 {
		w.mu.Lock()
		if len(w.accepted) > n {
			err := w.accepted[n]
			w.mu.Unlock()
			return err
		}
		w.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the server reported no handshake")
	return nil
}

func (w *world) client(t *testing.T, svid *x509svid.SVID, allow string) *identity.Config {
	return &identity.Config{
		Source: identitytest.NewSource(svid, w.ca.Bundle()),
		Allow:  identity.MustMatcher(allow),
		Table:  mustTable(t),
	}
}

func validFor(t *testing.T, ca *identitytest.CA, id string) *x509svid.SVID {
	return mustSVID(t, ca, id, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// TestHandshakeAllowsTwoRefusesOne: the server lets web and api in by
// SPIFFE ID; batch, with a valid SVID of the same trust domain, is refused
// with ErrNotAllowed on both sides. The admitted sessions carry each
// peer's SPIFFE ID and seal frames the other side opens.
func TestHandshakeAllowsTwoRefusesOne(t *testing.T) {
	w := newWorld(t, nil, "spiffe://"+td+"/ns/shop/sa/web", "spiffe://"+td+"/ns/shop/sa/api")
	for i, name := range []string{"web", "api"} {
		id := "spiffe://" + td + "/ns/shop/sa/" + name
		cfg := w.client(t, validFor(t, w.ca, id), "spiffe://"+td+"/ns/shop/sa/kv")
		cs, err := identity.Dial(context.Background(), w.data, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := w.serverErr(t, i); err != nil {
			t.Fatalf("server side of %s: %v", name, err)
		}
		if cs.PeerString() != "spiffe://"+td+"/ns/shop/sa/kv" || cs.Role() != identity.RoleClient {
			t.Fatalf("client session peer %s role %v", cs.PeerString(), cs.Role())
		}
		if cfg.Table.Client(w.data) != cs {
			t.Fatal("Table.Client does not find the dialed session")
		}
		ss := w.serverT.Lookup(cs.RemoteID())
		if ss == nil || ss.PeerString() != id || ss.RemoteID() != cs.LocalID() {
			t.Fatalf("server session %+v", ss)
		}
		if cs.Suite() != ss.Suite() {
			t.Fatalf("suites differ: %v and %v", cs.Suite(), ss.Suite())
		}
		// The keys agree: a request sealed by the client opens on the
		// server, a reply the other way.
		roundTrip(t, cfg.Table, cs, w.serverT, netip.MustParseAddr("127.0.0.1"))
	}
	cfg := w.client(t, validFor(t, w.ca, "spiffe://"+td+"/ns/shop/sa/batch"), "spiffe://"+td+"/ns/shop/sa/kv")
	_, err := identity.Dial(context.Background(), w.data, cfg)
	var he *identity.HandshakeError
	if !errors.Is(err, identity.ErrNotAllowed) || !errors.As(err, &he) || !he.Remote {
		t.Fatalf("batch: %v, want a remote ErrNotAllowed", err)
	}
	if serr := w.serverErr(t, 2); !errors.Is(serr, identity.ErrNotAllowed) {
		t.Fatalf("server side of batch: %v", serr)
	}
	t.Logf("client sees: %v", err)
	if cfg.Table.Len() != 0 || w.serverT.Len() != 2 {
		t.Fatalf("sessions: client %d, server %d", cfg.Table.Len(), w.serverT.Len())
	}
}

func roundTrip(t *testing.T, ct *identity.Table, cs *identity.Session, st *identity.Table, from netip.Addr) {
	t.Helper()
	buf := make([]byte, 128)
	f, err := proto.EncodeRequest(buf[proto.SealedPrefixLen:], 1, 7, 0, []byte{0x08, 0x2a})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{}, f...)
	sealed, err := ct.NewSealer().Seal(buf, proto.SealedPrefixLen, proto.SealedPrefixLen+len(f), cs)
	if err != nil {
		t.Fatal(err)
	}
	plain, ss, err := st.NewSealer().Open(sealed, from)
	if err != nil || !bytes.Equal(plain, want) {
		t.Fatalf("request opened to %x, %v", plain, err)
	}
	rbuf := make([]byte, 128)
	r, _ := proto.EncodeResponse(rbuf[proto.SealedPrefixLen:], 1, 7, 0, []byte{0x08, 0x2b})
	rwant := append([]byte{}, r...)
	rs, err := st.NewSealer().Seal(rbuf, proto.SealedPrefixLen, proto.SealedPrefixLen+len(r), ss)
	if err != nil {
		t.Fatal(err)
	}
	rp, _, err := ct.NewSealer().Open(rs, from)
	if err != nil || !bytes.Equal(rp, rwant) {
		t.Fatalf("reply opened to %x, %v", rp, err)
	}
}

// TestHandshakeRefusesBadSVIDs: an expired client SVID, an expired server
// SVID, a client SVID from a CA the server does not trust and one from
// another trust domain are refused, with the same sentinel on both sides.
func TestHandshakeRefusesBadSVIDs(t *testing.T) {
	past := time.Now().Add(-2 * time.Hour)
	t.Run("expired client", func(t *testing.T) {
		w := newWorld(t, nil, "spiffe://"+td+"/**")
		svid := mustSVID(t, w.ca, "spiffe://"+td+"/ns/shop/sa/web", past, past.Add(time.Hour))
		cfg := w.client(t, svid, "spiffe://"+td+"/**")
		// Our own check refuses to present it...
		_, err := identity.Dial(context.Background(), w.data, cfg)
		if !errors.Is(err, identity.ErrExpired) {
			t.Fatalf("own expired SVID: %v", err)
		}
		// ...and a client whose clock is wrong gets refused by the server.
		cfg.Now = func() time.Time { return past.Add(time.Minute) }
		_, err = identity.Dial(context.Background(), w.data, cfg)
		var he *identity.HandshakeError
		if !errors.Is(err, identity.ErrExpired) || !errors.As(err, &he) || !he.Remote {
			t.Fatalf("client: %v, want a remote ErrExpired", err)
		}
		if serr := w.serverErr(t, 0); !errors.Is(serr, identity.ErrExpired) {
			t.Fatalf("server: %v", serr)
		}
		t.Logf("client sees: %v", err)
	})
	t.Run("expired server", func(t *testing.T) {
		ca := mustCA(t, td)
		w2 := newWorldCA(t, ca, mustSVID(t, ca, "spiffe://"+td+"/ns/shop/sa/kv", past, past.Add(time.Hour)), "spiffe://"+td+"/**")
		cfg := w2.client(t, validFor(t, w2.ca, "spiffe://"+td+"/ns/shop/sa/web"), "spiffe://"+td+"/**")
		_, err := identity.Dial(context.Background(), w2.data, cfg)
		var he *identity.HandshakeError
		if !errors.Is(err, identity.ErrExpired) || !errors.As(err, &he) || he.Remote {
			t.Fatalf("client: %v, want a local ErrExpired", err)
		}
		serr := w2.serverErr(t, 0)
		if !errors.Is(serr, identity.ErrExpired) || !errors.As(serr, &he) || !he.Remote {
			t.Fatalf("server: %v, want a remote ErrExpired", serr)
		}
		t.Logf("server sees: %v", serr)
	})
	t.Run("untrusted CA", func(t *testing.T) {
		w := newWorld(t, nil, "spiffe://"+td+"/**")
		rogue := mustCA(t, td) // same trust domain name, different key
		cfg := w.client(t, validFor(t, rogue, "spiffe://"+td+"/ns/shop/sa/web"), "spiffe://"+td+"/**")
		_, err := identity.Dial(context.Background(), w.data, cfg)
		if !errors.Is(err, identity.ErrUntrusted) {
			t.Fatalf("client: %v", err)
		}
		if serr := w.serverErr(t, 0); !errors.Is(serr, identity.ErrUntrusted) {
			t.Fatalf("server: %v", serr)
		}
		t.Logf("client sees: %v", err)
	})
	t.Run("other trust domain", func(t *testing.T) {
		w := newWorld(t, nil, "spiffe://"+td+"/**")
		other := mustCA(t, "other.zerohop")
		cfg := w.client(t, validFor(t, other, "spiffe://other.zerohop/ns/shop/sa/web"), "spiffe://"+td+"/**")
		cfg.Source = identitytest.NewSource(validFor(t, other, "spiffe://other.zerohop/ns/shop/sa/web"), other.Bundle(), w.ca.Bundle())
		_, err := identity.Dial(context.Background(), w.data, cfg)
		if !errors.Is(err, identity.ErrUntrusted) {
			t.Fatalf("client: %v", err)
		}
		if serr := w.serverErr(t, 0); !errors.Is(serr, identity.ErrUntrusted) {
			t.Fatalf("server: %v", serr)
		}
	})
	t.Run("server not allowed by the client", func(t *testing.T) {
		w := newWorld(t, nil, "spiffe://"+td+"/**")
		cfg := w.client(t, validFor(t, w.ca, "spiffe://"+td+"/ns/shop/sa/web"), "spiffe://"+td+"/ns/shop/sa/payments")
		_, err := identity.Dial(context.Background(), w.data, cfg)
		if !errors.Is(err, identity.ErrNotAllowed) {
			t.Fatalf("client: %v", err)
		}
		if serr := w.serverErr(t, 0); !errors.Is(serr, identity.ErrNotAllowed) {
			t.Fatalf("server: %v", serr)
		}
	})
}

func TestHandshakeSuite(t *testing.T) {
	w := newWorld(t, nil, "spiffe://"+td+"/**")
	for _, s := range []identity.Suite{identity.SuiteChaCha20Poly1305, identity.SuiteAES128GCM} {
		cfg := w.client(t, validFor(t, w.ca, "spiffe://"+td+"/ns/a/sa/b"), "spiffe://"+td+"/**")
		cfg.Suite = s
		cs, err := identity.Dial(context.Background(), w.data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if cs.Suite() != s {
			t.Fatalf("forced %v, got %v", s, cs.Suite())
		}
		roundTrip(t, cfg.Table, cs, w.serverT, netip.MustParseAddr("127.0.0.1"))
	}
}

// TestHandshakeNotTLS: a peer that speaks something else gets nothing and
// the listener keeps serving.
func TestHandshakeNotTLS(t *testing.T) {
	w := newWorld(t, nil, "spiffe://"+td+"/**")
	c, err := net.Dial("tcp", w.data.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if serr := w.serverErr(t, 0); serr == nil {
		t.Fatal("the server accepted an HTTP request as a handshake")
	}
	c.Close()
	cfg := w.client(t, validFor(t, w.ca, "spiffe://"+td+"/ns/a/sa/b"), "spiffe://"+td+"/**")
	if _, err := identity.Dial(context.Background(), w.data, cfg); err != nil {
		t.Fatal(err)
	}
}
