package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/proto"
	zr "github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

// The identities of the sealed-frame tests: one server, two callers the
// policy allows, one it does not (all of the trust domain, so all pass
// the handshake), and an outsider whose CA the server does not trust.
const (
	sealTD     = "test.zerohop"
	idKV       = "spiffe://" + sealTD + "/ns/shop/sa/kv"
	idWeb      = "spiffe://" + sealTD + "/ns/shop/sa/web"
	idBilling  = "spiffe://" + sealTD + "/ns/shop/sa/billing"
	idIntruder = "spiffe://" + sealTD + "/ns/lab/sa/intruder"

	whoMethod         = "test.Seal/Who"
	whoBlockingMethod = "test.Seal/WhoBlocking"
)

// sealPolicy lets web and billing (by SPIFFE ID) call test.Seal and
// nobody else; the echo service stays open to all.
const sealPolicy = `rules:
  - name: shop-callers
    action: allow
    identities: ["` + idWeb + `", "` + idBilling + `"]
    services: ["test.Seal"]
  - name: nobody-else
    action: deny
    services: ["test.Seal"]
`

// sealWorld is a sealing server on one backend, its handshake listener
// and the test CA: on "uring" in this namespace on loopback, on "xsk" in
// the first namespace of a veth pair with the callers in the second.
type sealWorld struct {
	ca               *identitytest.CA
	backend          string
	srvHost, cliHost *topo.Host // nil: this namespace
	iface            string     // the server's interface (xsk)
	srv              *zr.Server
	table            *identity.Table
	hsPort           uint16     // the handshake listener's TCP port
	spoof            netip.Addr // an address of the callers' side that did no handshake
	// sealedServed counts handler runs of test.Seal methods on sealed
	// requests: what a forged frame must never reach.
	sealedServed atomic.Int64
}

type sealOptions struct {
	mode   zr.SealMode
	table  identity.TableConfig
	policy bool             // install sealPolicy through mesh/policy
	tcp    bool             // serve the stream transport too (uring only)
	ca     *identitytest.CA // the trust domain's CA (nil: a new one)
	// several: one of several servers of the test, which checks for
	// leftover loops once, after the last (expectNoLoopsLeft).
	several bool
}

// forSealBackends runs fn on both backends.
func forSealBackends(t *testing.T, fn func(t *testing.T, backend string)) {
	t.Run("uring", func(t *testing.T) { fn(t, "uring") })
	t.Run("xsk", func(t *testing.T) {
		topo.RequireRoot(t)
		fn(t, "xsk")
	})
}

func mustSVIDFor(t testing.TB, ca *identitytest.CA, id string) *identitytest.Source {
	t.Helper()
	svid, err := ca.IssueFor(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return identitytest.NewSource(svid, ca.Bundle())
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// in runs fn in h's namespace (nil: this one).
func in(h *topo.Host, fn func() error) error {
	if h == nil {
		return fn()
	}
	return h.Do(fn)
}

func newSealWorld(t *testing.T, backend string, o sealOptions) *sealWorld {
	t.Helper()
	ca, err := o.ca, error(nil)
	if ca == nil {
		if ca, err = identitytest.NewCA(sealTD); err != nil {
			t.Fatal(err)
		}
	}
	w := &sealWorld{ca: ca, backend: backend}
	if w.table, err = identity.NewTable(o.table); err != nil {
		t.Fatal(err)
	}
	opts := []zr.Option{zr.WithSealer(identity.NewServer(w.table, o.mode))}
	var pol *policy.Server
	if o.policy {
		if pol, err = policy.NewServer(policy.ServerConfig{Loops: 1, Logger: discard()}); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, pol.Options()...)
	}
	switch backend {
	case "uring":
		opts = append(opts, zr.WithBackend(zr.BackendUring))
		if o.tcp {
			opts = append(opts, zr.WithTCP())
		}
		w.srv, _ = startTestServer(t, func(f func() error) error { return f() }, "127.0.0.1:0", !o.several, opts...)
		w.spoof = netip.MustParseAddr("127.0.0.2")
	case "xsk":
		link, srv, _ := xskPair(t, true, 1, opts...)
		w.srv, w.srvHost, w.cliHost, w.iface = srv, link.A.Host, link.B.Host, link.A.Iface
		b := link.B.Addr4.As4()
		b[3] = 77
		w.spoof = netip.AddrFrom4(b)
		if out, err := link.B.Host.Command(t.Context(), "ip", "addr", "add", w.spoof.String()+"/24", "dev", link.B.Iface).CombinedOutput(); err != nil {
			t.Fatalf("adding the spoofed address: %v: %s", err, out)
		}
	}
	who := func(req *zr.Request, resp *zr.Response) {
		if req.Sealed() {
			w.sealedServed.Add(1)
		}
		resp.AppendString(1, req.Identity())
		sealed := uint64(0)
		if req.Sealed() {
			sealed = 1
		}
		resp.AppendVarint(2, sealed)
	}
	w.srv.Handle(whoMethod, who)
	w.srv.HandleBlocking(whoBlockingMethod, who)
	if pol != nil {
		doc, err := policy.ParseDocument("seal-policy", []byte(sealPolicy))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pol.Load(doc, "seal-policy"); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &identity.Config{Source: mustSVIDFor(t, ca, idKV), Allow: identity.AllowTrustDomain(ca.TrustDomain),
		Table: w.table, Logger: discard()}
	var ln *identity.Listener
	if err := in(w.srvHost, func() (err error) {
		ln, err = identity.Listen(netip.AddrPortFrom(w.srv.Addr().Addr(), 0), cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	w.hsPort = ln.Addr().Port()
	served := make(chan error, 1)
	go func() { served <- ln.Serve() }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-served; err != nil {
			t.Errorf("handshake listener: %v", err)
		}
	})
	return w
}

// xdpUnsealed is the steering program's count of unsealed requests it
// dropped for a strict server (0 on uring, where there is no program).
func (w *sealWorld) xdpUnsealed(t *testing.T) uint64 {
	t.Helper()
	if w.backend != "xsk" {
		return 0
	}
	var n uint64
	if err := in(w.srvHost, func() error {
		m, err := bpf.OpenAttached(w.iface)
		if err != nil {
			return err
		}
		defer m.Close()
		c, err := m.Counters()
		n = c.UnsealedDropped
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// identityClient is the client side of id: its sessions (a table of its
// own) and the sealer, whose handshakes go out of the callers' namespace.
func (w *sealWorld) identityClient(t *testing.T, ca *identitytest.CA, id string, table identity.TableConfig) (*identity.Client, *identity.Table) {
	t.Helper()
	tb, err := identity.NewTable(table)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &identity.Config{Source: mustSVIDFor(t, ca, id), Allow: identity.MustMatcher(idKV), Table: tb,
		HandshakePort: w.hsPort, Logger: discard()}
	if h := w.cliHost; h != nil {
		cfg.DialContext = func(ctx context.Context, network, address string) (c net.Conn, err error) {
			err = h.Do(func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, address)
				return err
			})
			return c, err
		}
	}
	cl, err := identity.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, tb
}

// dial makes a runtime Client of the callers' side, sealing with s when
// it is not nil.
func (w *sealWorld) dial(t *testing.T, network string, s zr.ClientSealer) *zr.Client {
	t.Helper()
	e := engineIn(t, w.cliHost)
	opts := []zr.ClientOption{zr.WithEngine(e), zr.WithRetransmission(20*time.Millisecond, 200*time.Millisecond, 8)}
	if s != nil {
		opts = append(opts, zr.WithClientSealer(s))
	}
	var c *zr.Client
	if err := in(w.cliHost, func() (err error) {
		c, err = zr.Dial(network, w.srv.Addr().String(), opts...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// whoReply reads what test.Seal/Who answered: the identity the handler saw
// and whether the request came sealed.
func whoReply(t *testing.T, payload []byte) (string, bool) {
	t.Helper()
	var id string
	var sealed uint64
	for len(payload) > 0 {
		num, typ, n := protowire.ConsumeTag(payload)
		if n < 0 {
			t.Fatalf("reply payload % x", payload)
		}
		payload = payload[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeString(payload)
			id, n = v, m
		case num == 2 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(payload)
			sealed, n = v, m
		default:
			n = protowire.ConsumeFieldValue(num, typ, payload)
		}
		if n < 0 {
			t.Fatalf("reply payload field %d", num)
		}
		payload = payload[n:]
	}
	return id, sealed == 1
}

func (w *sealWorld) who(t *testing.T, c *zr.Client, method string) (string, bool, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Call(ctx, method, nil, nil)
	if err != nil {
		return "", false, err
	}
	id, sealed := whoReply(t, r.Payload)
	return id, sealed, nil
}

// TestSealedIdentities: a strict server with an authorization policy on
// SPIFFE IDs. web and billing call test.Seal and its handlers (on the loop
// and on a worker) see their IDs; the intruder, whose SVID the server
// accepts, is DENIED by the policy's identity rule; an outsider from an
// untrusted CA fails the handshake with ErrUntrusted; an unsealed caller is
// DENIED before any handler on uring, and on xsk its requests are dropped
// by the steering program (counted) before they reach a socket, while its
// PING is answered in clear. Every sealed reply opened (the client ignored
// no clear one).
func TestSealedIdentities(t *testing.T) {
	forSealBackends(t, func(t *testing.T, backend string) {
		w := newSealWorld(t, backend, sealOptions{mode: zr.SealStrict, policy: true})
		for _, id := range []string{idWeb, idBilling} {
			cl, _ := w.identityClient(t, w.ca, id, identity.TableConfig{})
			c := w.dial(t, "udp", cl)
			for _, m := range []string{whoMethod, whoBlockingMethod} {
				got, sealed, err := w.who(t, c, m)
				if err != nil {
					t.Fatalf("%s calling %s: %v", id, m, err)
				}
				if got != id || !sealed {
					t.Fatalf("%s calling %s: the handler saw identity %q, sealed %v", id, m, got, sealed)
				}
			}
			if st := c.Stats(); st.Unsealed != 0 || st.Unopened != 0 {
				t.Fatalf("%s: %d clear and %d unopenable replies", id, st.Unsealed, st.Unopened)
			}
		}
		served := w.sealedServed.Load()

		cl, _ := w.identityClient(t, w.ca, idIntruder, identity.TableConfig{})
		intruder := w.dial(t, "udp", cl)
		_, _, err := w.who(t, intruder, whoMethod)
		var se *zr.StatusError
		if !errors.As(err, &se) || se.Status != proto.StatusDenied {
			t.Fatalf("intruder's call: %v, want DENIED by the policy", err)
		}
		// Its identity is still good for what the policy leaves open.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := intruder.Call(ctx, echo.EchoMethod, []byte{8, 1}, nil); err != nil {
			t.Fatalf("intruder's echo: %v", err)
		}

		other, err := identitytest.NewCA("other.example")
		if err != nil {
			t.Fatal(err)
		}
		cl, _ = w.identityClient(t, other, "spiffe://other.example/ns/x/sa/y", identity.TableConfig{})
		outsider := w.dial(t, "udp", cl)
		if _, _, err := w.who(t, outsider, whoMethod); !errors.Is(err, identity.ErrUntrusted) {
			t.Fatalf("outsider's call: %v, want the handshake refused (ErrUntrusted)", err)
		}

		plain := w.dial(t, "udp", nil)
		_, _, err = w.who(t, plain, whoMethod)
		wantDenied := uint64(1)
		if backend == "xsk" {
			if !errors.Is(err, zr.ErrNoReply) {
				t.Fatalf("unsealed call to a strict server on AF_XDP: %v, want no reply (dropped in XDP)", err)
			}
			if n := w.xdpUnsealed(t); n < 1 || n > 8 {
				t.Fatalf("the steering program dropped %d unsealed requests, want the call's copies (1 to 8)", n)
			}
			wantDenied = 0
		} else if !errors.As(err, &se) || se.Status != proto.StatusDenied {
			t.Fatalf("unsealed call to a strict server: %v, want DENIED", err)
		}
		if st, err := plain.Ping(ctx); err != nil || st != proto.PongServing {
			t.Fatalf("unsealed PING: %v %v, want PONG serving", st, err)
		}
		if n := w.sealedServed.Load(); n != served {
			t.Fatalf("the handlers ran %d more sealed requests for callers the policy denies", n-served)
		}
		st := w.srv.Stats().Total
		if st.Sealed < 5 || (st.UnsealedDenied == 0) != (wantDenied == 0) || st.Unsealed != 0 {
			t.Fatalf("server counted %d sealed, %d unsealed denied, %d unsealed served; want ≥ 5, %s, 0",
				st.Sealed, st.UnsealedDenied, st.Unsealed, map[bool]string{true: "0", false: "≥ 1"}[wantDenied == 0])
		}
		if ts := w.table.Stats(time.Now()); ts.Handshakes != 3 || ts.Refusals != 1 {
			t.Fatalf("server table: %d handshakes, %d refused; want 3 and 1 (the outsider)", ts.Handshakes, ts.Refusals)
		}
	})
}

// TestSealedPermissive: a permissive server serves sealed callers with
// their identity and unsealed ones without, and counts both.
func TestSealedPermissive(t *testing.T) {
	forSealBackends(t, func(t *testing.T, backend string) {
		w := newSealWorld(t, backend, sealOptions{mode: zr.SealPermissive})
		cl, _ := w.identityClient(t, w.ca, idWeb, identity.TableConfig{})
		sealedC := w.dial(t, "udp", cl)
		plainC := w.dial(t, "udp", nil)
		for i := 0; i < 10; i++ {
			if id, sealed, err := w.who(t, sealedC, whoMethod); err != nil || id != idWeb || !sealed {
				t.Fatalf("sealed call: %q %v %v", id, sealed, err)
			}
			if id, sealed, err := w.who(t, plainC, whoMethod); err != nil || id != "" || sealed {
				t.Fatalf("unsealed call: %q %v %v", id, sealed, err)
			}
		}
		st := w.srv.Stats().Total
		if st.Sealed < 10 || st.Unsealed < 10 || st.UnsealedDenied != 0 {
			t.Fatalf("server counted %d sealed, %d unsealed, %d denied; want ≥ 10, ≥ 10, 0", st.Sealed, st.Unsealed, st.UnsealedDenied)
		}
	})
}

// TestSealedStreamTransport: sealed calls over the TCP transport, the
// handshake on a port of its own.
func TestSealedStreamTransport(t *testing.T) {
	w := newSealWorld(t, "uring", sealOptions{mode: zr.SealStrict, tcp: true})
	cl, _ := w.identityClient(t, w.ca, idBilling, identity.TableConfig{})
	c := w.dial(t, "tcp", cl)
	for _, m := range []string{whoMethod, whoBlockingMethod, whoMethod} {
		if id, sealed, err := w.who(t, c, m); err != nil || id != idBilling || !sealed {
			t.Fatalf("%s over TCP: %q %v %v", m, id, sealed, err)
		}
	}
	plain := w.dial(t, "tcp", nil)
	var se *zr.StatusError
	if _, _, err := w.who(t, plain, whoMethod); !errors.As(err, &se) || se.Status != proto.StatusDenied {
		t.Fatalf("unsealed call over TCP: %v, want DENIED", err)
	}
	// The unsealed call was refused before it was served.
	if st := w.srv.Stats().Total; st.Served["tcp"] != 3 || st.Sealed != 3 || st.UnsealedDenied != 1 {
		t.Fatalf("served %d over TCP, %d sealed, %d unsealed denied; want 3, 3, 1 (a stream is never retransmitted)", st.Served["tcp"], st.Sealed, st.UnsealedDenied)
	}
}

// rawCaller sends hand-made datagrams from the callers' side, bound to
// from (zero: any), with a sealer half of its own over the client's
// sessions.
type rawCaller struct {
	t    *testing.T
	conn *net.UDPConn
	seal zr.ClientLoopSealer
	to   netip.AddrPort
	buf  []byte
}

func (w *sealWorld) rawCaller(t *testing.T, cl *identity.Client, from netip.Addr) *rawCaller {
	t.Helper()
	r := &rawCaller{t: t, seal: cl.Loop(0), to: w.srv.Addr(), buf: make([]byte, 4096)}
	if err := in(w.cliHost, func() (err error) {
		var laddr *net.UDPAddr
		if from.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		}
		r.conn, err = net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(w.srv.Addr()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close() })
	return r
}

// sealed returns a freshly sealed request for method with request id id.
func (r *rawCaller) sealed(id uint64, method string) []byte {
	r.t.Helper()
	plain, err := proto.EncodeRequest(make([]byte, 64), id, proto.MethodID(method), 0, []byte{8, byte(id)})
	if err != nil {
		r.t.Fatal(err)
	}
	f, err := r.seal.SealRequest(make([]byte, 0, len(plain)+proto.SealedOverhead), plain, r.to)
	if err != nil {
		r.t.Fatal(err)
	}
	return f
}

func (r *rawCaller) send(b []byte) {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// until reads replies until the one to request id want, which must come
// sealed and open; it returns how many other replies came first and
// whether any of them was sealed.
func (r *rawCaller) until(want uint64) (others int, sealedOthers int) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.conn.SetReadDeadline(deadline)
		n, err := r.conn.Read(r.buf)
		if err != nil {
			r.t.Fatalf("waiting for the reply to %d: %v", want, err)
		}
		b := r.buf[:n]
		_, perr := proto.Parse(b)
		sealed := perr != nil && errors.Is(perr, proto.ErrSealed)
		var f proto.Frame
		if sealed {
			plain, _, err := r.seal.OpenReply(b, r.to)
			if err != nil {
				r.t.Fatalf("a sealed reply that does not open: %v", err)
			}
			if f, err = proto.Parse(plain); err != nil {
				r.t.Fatalf("an opened reply that does not parse: %v", err)
			}
		} else if perr != nil {
			r.t.Fatalf("reply does not parse: %v", perr)
		} else {
			f, _ = proto.Parse(b)
		}
		if f.RequestID() == want {
			if !sealed || f.Status() != proto.StatusOK {
				r.t.Fatalf("reply to %d: sealed %v, status %v", want, sealed, f.Status())
			}
			return others, sealedOthers
		}
		others++
		if sealed {
			sealedOthers++
		}
	}
}

// TestSealedForgeries sends what an attacker on the callers' network can:
// a replay of a captured sealed datagram, a valid sealed frame from a
// spoofed source address, and the frame with each of its bits flipped in
// turn. None reaches a handler or gets a sealed reply; each is counted by
// the server (the runtime's sealed drops and the sealer's reasons), and
// the very frame refused from the spoofed address is served from the
// right one.
func TestSealedForgeries(t *testing.T) {
	forSealBackends(t, func(t *testing.T, backend string) {
		w := newSealWorld(t, backend, sealOptions{mode: zr.SealStrict})
		cl, _ := w.identityClient(t, w.ca, idWeb, identity.TableConfig{})
		// A session, made as any caller makes it.
		c := w.dial(t, "udp", cl)
		if _, _, err := w.who(t, c, whoMethod); err != nil {
			t.Fatal(err)
		}
		r := w.rawCaller(t, cl, netip.Addr{})
		refused := func(reason identity.Reason) uint64 { return w.table.Stats(time.Now()).Refused[reason] }
		dropped := func() uint64 { return w.srv.Stats().Total.Dropped["sealed"] }

		// A captured datagram, served once, then replayed.
		captured := r.sealed(100, whoMethod)
		r.send(captured)
		if others, _ := r.until(100); others != 0 {
			t.Fatalf("%d unexpected replies", others)
		}
		served, d0, replays0 := w.sealedServed.Load(), dropped(), refused(identity.ReasonReplay)
		r.send(captured)
		r.send(r.sealed(101, whoMethod))
		if others, _ := r.until(101); others != 0 {
			t.Fatalf("the replay got %d replies", others)
		}
		if n := w.sealedServed.Load() - served; n != 1 {
			t.Fatalf("%d sealed requests served for a replay and a fresh frame, want 1", n)
		}
		if dropped()-d0 != 1 || refused(identity.ReasonReplay)-replays0 != 1 {
			t.Fatalf("replay: %d sealed drops, %d replays refused; want 1 and 1", dropped()-d0, refused(identity.ReasonReplay)-replays0)
		}

		// A fresh, valid frame from an address that did no handshake.
		spoofer := w.rawCaller(t, cl, w.spoof)
		frame := r.sealed(102, whoMethod)
		served, d0, addr0 := w.sealedServed.Load(), dropped(), refused(identity.ReasonAddress)
		spoofer.send(frame)
		r.send(r.sealed(103, whoMethod))
		if others, _ := r.until(103); others != 0 {
			t.Fatalf("%d unexpected replies", others)
		}
		spoofer.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := spoofer.conn.Read(spoofer.buf); err == nil {
			t.Fatalf("the spoofed frame was answered: % x", spoofer.buf[:n])
		}
		if w.sealedServed.Load()-served != 1 || dropped()-d0 != 1 || refused(identity.ReasonAddress)-addr0 != 1 {
			t.Fatalf("spoofed source: %d served, %d sealed drops, %d refused for the address; want 1, 1, 1",
				w.sealedServed.Load()-served, dropped()-d0, refused(identity.ReasonAddress)-addr0)
		}
		r.send(frame) // the same bytes from the session's peer are good
		if others, _ := r.until(102); others != 0 {
			t.Fatalf("%d unexpected replies", others)
		}

		// Every bit of a fresh frame flipped in turn, in batches, each
		// batch followed by a good frame whose reply marks its end. A flip
		// in the clear header may make a frame a broken or unsealed one,
		// which the strict server answers in clear (BAD_FRAME, DENIED) or
		// drops; none opens.
		st0, xdp0 := w.srv.Stats().Total, w.xdpUnsealed(t)
		served = w.sealedServed.Load()
		base := r.sealed(200, whoMethod)
		flips, batch, id := 0, 0, uint64(201)
		for bit := 0; bit < len(base)*8; bit++ {
			f := append([]byte(nil), base...)
			f[bit/8] ^= 1 << (bit % 8)
			r.send(f)
			flips++
			if batch++; batch == 32 || bit == len(base)*8-1 {
				r.send(r.sealed(id, whoMethod))
				if _, sealedOthers := r.until(id); sealedOthers != 0 {
					t.Fatalf("%d flipped frames got sealed replies", sealedOthers)
				}
				batch, id = 0, id+1
			}
		}
		probes := int64(id - 201)
		if n := w.sealedServed.Load() - served; n != probes {
			t.Fatalf("%d sealed requests served for %d flipped frames and %d good ones, want %d", n, flips, probes, probes)
		}
		st := w.srv.Stats().Total
		// On xsk a flip of the SEALED bit makes an unsealed request, which
		// the steering program drops before the loop.
		xdp := w.xdpUnsealed(t) - xdp0
		rx := st.RX - st0.RX
		if rx+xdp != uint64(flips)+uint64(probes) {
			t.Fatalf("the server received %d datagrams (and XDP dropped %d) of the %d sent: the kernel lost some, the accounting below would not hold",
				rx, xdp, flips+int(probes))
		}
		rejected := st.DroppedTotal() - st0.DroppedTotal() + st.BadFrame - st0.BadFrame + st.UnsealedDenied - st0.UnsealedDenied + xdp
		if rejected != uint64(flips) {
			t.Fatalf("%d flipped frames, %d rejected (dropped %v, bad frame %d, unsealed denied %d, XDP unsealed drops %d)", flips, rejected,
				st.Dropped, st.BadFrame-st0.BadFrame, st.UnsealedDenied-st0.UnsealedDenied, xdp)
		}
		if auth := refused(identity.ReasonAuth); auth == 0 {
			t.Fatal("no flipped frame failed authentication")
		}
		t.Logf("%d flips: %d dropped as sealed, %d answered BAD_FRAME, %d DENIED as unsealed, %d dropped in XDP as unsealed; sealer: %s", flips,
			st.Dropped["sealed"]-st0.Dropped["sealed"], st.BadFrame-st0.BadFrame, st.UnsealedDenied-st0.UnsealedDenied, xdp, refusedLine(w.table))
	})
}

func refusedLine(t *identity.Table) string {
	st := t.Stats(time.Now())
	s := ""
	for r := identity.Reason(1); r < identity.NumReasons; r++ {
		if n := st.Refused[r]; n > 0 {
			s += fmt.Sprintf("%s=%d ", r.String(), n)
		}
	}
	return s
}

// TestSealedKeyRotationUnderLoad keeps 32 calls outstanding while both
// directions' keys are updated twice (a key seals MinKeyPackets frames,
// the smallest budget allowed): every call completes, and no frame is
// refused for its key.
func TestSealedKeyRotationUnderLoad(t *testing.T) {
	forSealBackends(t, func(t *testing.T, backend string) {
		tc := identity.TableConfig{KeyPackets: identity.MinKeyPackets}
		w := newSealWorld(t, backend, sealOptions{mode: zr.SealStrict, table: tc})
		cl, ct := w.identityClient(t, w.ca, idWeb, tc)
		c := w.dial(t, "udp", cl)
		total := 2*identity.MinKeyPackets + 2000
		const outstanding = 32
		done := make(chan *zr.Call, outstanding)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		payload := []byte{8, 42}
		started, ok, failed := 0, 0, 0
		var firstErr error
		for ; started < outstanding; started++ {
			c.Go(ctx, echo.EchoMethod, payload, nil, done)
		}
		for ok+failed < total {
			call := <-done
			if call.Err != nil {
				failed++
				if firstErr == nil {
					firstErr = call.Err
				}
			} else {
				ok++
			}
			call.Release()
			if started < total {
				c.Go(ctx, echo.EchoMethod, payload, nil, done)
				started++
			}
		}
		if failed != 0 {
			t.Fatalf("%d of %d calls failed across key updates, the first: %v", failed, total, firstErr)
		}
		cs, ss := ct.Stats(time.Now()), w.table.Stats(time.Now())
		if len(cs.Sessions) != 1 || len(ss.Sessions) != 1 {
			t.Fatalf("%d client and %d server sessions, want 1 each", len(cs.Sessions), len(ss.Sessions))
		}
		c0, s0 := cs.Sessions[0], ss.Sessions[0]
		if c0.SendKeyUpdates < 2 || s0.RecvKeyUpdates < 2 || s0.SendKeyUpdates < 2 || c0.RecvKeyUpdates < 2 {
			t.Fatalf("key updates: client sent %d received %d, server sent %d received %d; want ≥ 2 each",
				c0.SendKeyUpdates, c0.RecvKeyUpdates, s0.SendKeyUpdates, s0.RecvKeyUpdates)
		}
		if ss.Refused[identity.ReasonAuth] != 0 || cs.Refused[identity.ReasonAuth] != 0 {
			t.Fatalf("frames refused for their key: server %d, client %d", ss.Refused[identity.ReasonAuth], cs.Refused[identity.ReasonAuth])
		}
		t.Logf("%d calls, %d retransmits; client: %d/%d key updates, server: %d/%d; server refused: %s",
			total, c.Stats().Retransmits, c0.SendKeyUpdates, c0.RecvKeyUpdates, s0.SendKeyUpdates, s0.RecvKeyUpdates, refusedLine(w.table))
	})
}

// endpointsResolver resolves a service to fixed endpoints.
type endpointsResolver []zr.Endpoint

func (r endpointsResolver) Build(_ string, cc zr.ResolverConn) (zr.Resolver, error) {
	go cc.UpdateState(zr.ResolverState{Endpoints: r})
	return r, nil
}
func (endpointsResolver) ResolveNow() {}
func (endpointsResolver) Close()      {}

// TestSealedService: a DialService client seals its calls to every
// endpoint it picks (two strict servers of one trust domain), each after a
// handshake of its own with that server.
func TestSealedService(t *testing.T) {
	expectNoLoopsLeft(t)
	a := newSealWorld(t, "uring", sealOptions{mode: zr.SealStrict, several: true})
	b := newSealWorld(t, "uring", sealOptions{mode: zr.SealStrict, ca: a.ca, several: true})
	// Each listener got a port of its own, and Config.HandshakePort names
	// one for every server: the client's dialler maps each server's data
	// address (what Dial asks for, HandshakePort being 0) to its listener.
	hs := map[netip.AddrPort]uint16{a.srv.Addr(): a.hsPort, b.srv.Addr(): b.hsPort}
	tb, err := identity.NewTable(identity.TableConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &identity.Config{Source: mustSVIDFor(t, a.ca, idWeb), Allow: identity.MustMatcher(idKV), Table: tb, Logger: discard(),
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			data := netip.MustParseAddrPort(address) // HandshakeAddr(data, 0) is the data address
			var d net.Dialer
			return d.DialContext(ctx, network, netip.AddrPortFrom(data.Addr(), hs[data]).String())
		}}
	cl, err := identity.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := zr.DialService("kv", zr.WithEngine(engineIn(t, nil)), zr.WithClientSealer(cl),
		zr.WithResolver(endpointsResolver{{Addr: a.srv.Addr()}, {Addr: b.srv.Addr()}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for i := 0; i < 20; i++ {
		if id, sealed, err := a.who(t, c, whoMethod); err != nil || id != idWeb || !sealed {
			t.Fatalf("call %d: %q %v %v", i, id, sealed, err)
		}
	}
	na, nb := a.sealedServed.Load(), b.sealedServed.Load()
	if na == 0 || nb == 0 || na+nb < 20 {
		t.Fatalf("sealed calls served: %d by one server, %d by the other; want both, 20 in all", na, nb)
	}
	if n := tb.Len(); n != 2 {
		t.Fatalf("the client holds %d sessions, want one per server", n)
	}
}
