package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what both ends of a handshake need.
type Config struct {
	// Source is this workload's SVID and trust bundles.
	Source Source
	// Allow is who this side accepts as a peer: a server the clients it
	// lets in, a client the servers it talks to. Required.
	Allow *Matcher
	// Table receives the established sessions. Required.
	Table *Table
	// Suite forces the AEAD; 0 picks by hardware (HardwareSuite), and a
	// server then agrees to AES-128-GCM only with a client that has it in
	// hardware too.
	Suite Suite
	// HandshakePort is, for Dial, the TCP port of the servers' handshake
	// listeners; 0 means the same number as the server's UDP data port.
	HandshakePort uint16
	// HandshakeTimeout bounds one handshake (default 5 s).
	HandshakeTimeout time.Duration
	// SessionLifetime caps a session's life (default 1 h); it also ends
	// when either SVID expires.
	SessionLifetime time.Duration
	// Now is the clock for certificate checks and expiry (time.Now if
	// nil), for tests.
	Now func() time.Time
	// Logger gets one line per refused handshake (slog.Default if nil).
	Logger *slog.Logger
	// OnHandshake, if set, is called after each handshake a Listener ran,
	// with the session or the error.
	OnHandshake func(remote netip.AddrPort, s *Session, err error)
	// DialContext, if set, opens Dial's TCP connections instead of a
	// net.Dialer: for a client whose sockets must be made somewhere
	// particular (another network namespace, through a proxy). Client's
	// handshakes run on goroutines of their own, whose OS thread is in
	// the process's network namespace whatever the caller's was.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
}

// Defaults of Config.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultSessionLifetime  = time.Hour
	// ALPN is the TLS application protocol of the handshake listener.
	ALPN = "zerohop-identity/1"
)

func (c *Config) check() error {
	switch {
	case c.Source == nil:
		return errors.New("identity: Config.Source is nil: load an identity (LoadDir for --identity DIR, or the Workload API)")
	case c.Allow == nil:
		return errors.New("identity: Config.Allow is nil: say which SPIFFE IDs may be peers (NewMatcher, AllowTrustDomain)")
	case c.Table == nil:
		return errors.New("identity: Config.Table is nil: make one with NewTable")
	case c.Suite != 0 && !c.Suite.valid():
		return fmt.Errorf("identity: Config.Suite %d is not a suite", c.Suite)
	}
	return nil
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) timeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (c *Config) lifetime() time.Duration {
	if c.SessionLifetime > 0 {
		return c.SessionLifetime
	}
	return DefaultSessionLifetime
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

func (c *Config) suitePref() (Suite, bool) {
	if c.Suite != 0 {
		return c.Suite, true
	}
	return HardwareSuite(), false
}

// HandshakeAddr is where a server with UDP data address data takes
// handshakes: the same IP, TCP port port, or the data port's number when
// port is 0 (TCP and UDP ports are separate spaces). A server that also
// runs GWIR's TCP transport on its data port must configure another port.
func HandshakeAddr(data netip.AddrPort, port uint16) netip.AddrPort {
	if port == 0 {
		port = data.Port()
	}
	return netip.AddrPortFrom(data.Addr(), port)
}

// HandshakeError is a refused or failed handshake.
type HandshakeError struct {
	Op     string         // "dial" or "accept"
	Addr   netip.AddrPort // the other end
	Peer   string         // its SPIFFE ID, when it got that far
	Remote bool           // the peer refused us; Err carries its reason
	Err    error
}

func (e *HandshakeError) Error() string {
	s := "identity: " + e.Op + " " + e.Addr.String()
	if e.Peer != "" {
		s += " (" + e.Peer + ")"
	}
	if e.Remote {
		s += ": refused by the peer"
	}
	return s + ": " + e.Err.Error()
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// Handshake messages, sent inside the TLS connection once TLS 1.3 is up:
//
//	client → server  HELLO   version 1, suite preference, forced flag, client's session id
//	server → client  ACCEPT  version 1, suite, server's session id, lifetime in seconds
//	client → server  DONE
//
// or REFUSE (a code and a UTF-8 reason) from whichever side refuses the
// other's SVID or identity, after which both close. Each message is type
// u8, length u16, body.
const (
	msgHello  = 1
	msgAccept = 2
	msgDone   = 3
	msgRefuse = 4

	protoVersion = 1
	maxMsgBody   = 512

	refuseExpired    = 1
	refuseUntrusted  = 2
	refuseNotAllowed = 3
	refuseOther      = 4
)

func writeMsg(w io.Writer, typ byte, body []byte) error {
	if len(body) > maxMsgBody {
		body = body[:maxMsgBody]
	}
	b := make([]byte, 3+len(body))
	b[0] = typ
	binary.BigEndian.PutUint16(b[1:], uint16(len(body)))
	copy(b[3:], body)
	_, err := w.Write(b)
	return err
}

func readMsg(r io.Reader) (byte, []byte, error) {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	if n > maxMsgBody {
		return 0, nil, fmt.Errorf("%w: %d-byte message", ErrProtocol, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return h[0], body, nil
}

func refuseCode(err error) byte {
	switch {
	case errors.Is(err, ErrExpired):
		return refuseExpired
	case errors.Is(err, ErrUntrusted):
		return refuseUntrusted
	case errors.Is(err, ErrNotAllowed):
		return refuseNotAllowed
	}
	return refuseOther
}

func sendRefuse(w io.Writer, err error) {
	_ = writeMsg(w, msgRefuse, append([]byte{refuseCode(err)}, err.Error()...))
}

// remoteRefusal turns a REFUSE body into an error that matches the same
// sentinel as on the refusing side.
func remoteRefusal(body []byte) error {
	if len(body) == 0 {
		return fmt.Errorf("%w: empty refusal", ErrProtocol)
	}
	var sentinel error
	switch body[0] {
	case refuseExpired:
		sentinel = ErrExpired
	case refuseUntrusted:
		sentinel = ErrUntrusted
	case refuseNotAllowed:
		sentinel = ErrNotAllowed
	default:
		return fmt.Errorf("%q", body[1:])
	}
	said := strings.TrimPrefix(string(body[1:]), sentinel.Error()+": ")
	return fmt.Errorf("%w: the peer said: %s", sentinel, said)
}

// describeTLS names what a failed TLS handshake most likely means.
func describeTLS(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return fmt.Errorf("%w: the peer aborted TLS (%w): it could not use our certificate", ErrUntrusted, err)
	}
	return fmt.Errorf("tls: %w", err)
}

func exporterContext(suite Suite, clientID, serverID uint32) []byte {
	b := make([]byte, 9)
	b[0] = byte(suite)
	binary.BigEndian.PutUint32(b[1:], clientID)
	binary.BigEndian.PutUint32(b[5:], serverID)
	return b
}

func expiry(now time.Time, lifetime time.Duration, own, peer *x509.Certificate) time.Time {
	e := now.Add(lifetime)
	if own.NotAfter.Before(e) {
		e = own.NotAfter
	}
	if peer.NotAfter.Before(e) {
		e = peer.NotAfter
	}
	return e
}

// Dial runs a handshake with the server whose UDP data address is server
// (its handshake listener at HandshakeAddr(server, cfg.HandshakePort)) and
// installs the session in cfg.Table, where Table.Client(server) finds it.
// The server's SVID must verify against cfg.Source's bundle and its ID
// match cfg.Allow.
func Dial(ctx context.Context, server netip.AddrPort, cfg *Config) (*Session, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	addr := HandshakeAddr(server, cfg.HandshakePort)
	fail := func(peer string, remote bool, err error) (*Session, error) {
		return nil, &HandshakeError{Op: "dial", Addr: addr, Peer: peer, Remote: remote, Err: err}
	}
	cert, own, err := tlsCertificate(cfg.Source)
	if err != nil {
		return fail("", false, err)
	}
	if err := checkOwn(own.Certificates, cfg.now()); err != nil {
		return fail("", false, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	dial := cfg.DialContext
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	raw, err := dial(ctx, "tcp", addr.String())
	if err != nil {
		return fail("", false, err)
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	tc := tls.Client(raw, &tls.Config{
		MinVersion: tls.VersionTLS13,
		// SPIFFE IDs are not host names: chain verification is skipped
		// here and done on the SVID right after the handshake (verifyPeer),
		// before anything is sent. crypto/tls still checks that the server
		// holds the certificate's key (CertificateVerify).
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		},
		NextProtos: []string{ALPN},
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail("", false, describeTLS(err))
	}
	st := tc.ConnectionState()
	now := cfg.now()
	peerID, err := verifyPeer(cfg.Source, st.PeerCertificates, now)
	if err == nil && !cfg.Allow.Match(peerID) {
		err = fmt.Errorf("%w: %s is not among the servers this client accepts (%s)", ErrNotAllowed, peerID, cfg.Allow)
	}
	if err != nil {
		sendRefuse(tc, err)
		return fail(peerID.String(), false, err)
	}
	localID, err := cfg.Table.reserve()
	if err != nil {
		sendRefuse(tc, err)
		return fail(peerID.String(), false, err)
	}
	installed := false
	defer func() {
		if !installed {
			cfg.Table.release(localID)
		}
	}()
	pref, forced := cfg.suitePref()
	hello := make([]byte, 7)
	hello[0] = protoVersion
	hello[1] = byte(pref)
	if forced {
		hello[2] = 1
	}
	binary.BigEndian.PutUint32(hello[3:], localID)
	if err := writeMsg(tc, msgHello, hello); err != nil {
		return fail(peerID.String(), false, err)
	}
	typ, body, err := readMsg(tc)
	if err != nil {
		return fail(peerID.String(), false, fmt.Errorf("reading the server's answer: %w", describeTLS(err)))
	}
	if typ == msgRefuse {
		return fail(peerID.String(), true, remoteRefusal(body))
	}
	if typ != msgAccept || len(body) != 10 || body[0] != protoVersion || !Suite(body[1]).valid() {
		return fail(peerID.String(), false, fmt.Errorf("%w: unexpected message %d (%d bytes)", ErrProtocol, typ, len(body)))
	}
	suite := Suite(body[1])
	if forced && suite != pref {
		err := fmt.Errorf("%w: the server chose %s, this client requires %s (Config.Suite)", ErrProtocol, suite, pref)
		sendRefuse(tc, err)
		return fail(peerID.String(), false, err)
	}
	serverID := binary.BigEndian.Uint32(body[2:])
	lifetime := time.Duration(binary.BigEndian.Uint32(body[6:])) * time.Second
	master, err := st.ExportKeyingMaterial(exporterLabel, exporterContext(suite, localID, serverID), secretLen)
	if err != nil {
		return fail(peerID.String(), false, err)
	}
	exp := expiry(now, min(lifetime, cfg.lifetime()), own.Certificates[0], st.PeerCertificates[0])
	s, err := cfg.Table.establish(sessionParams{
		role: RoleClient, suite: suite, master: master, localID: localID, remoteID: serverID,
		peerAddr: addr.Addr(), server: server, peerID: peerID, expires: exp, now: now,
	})
	clear(master)
	if err != nil {
		return fail(peerID.String(), false, err)
	}
	installed = true
	if err := writeMsg(tc, msgDone, nil); err != nil {
		s.Close()
		return fail(peerID.String(), false, err)
	}
	cfg.Table.handshakes.Add(1)
	return s, nil
}

// Listener accepts handshakes on a TCP address and installs the sessions
// in its Config's table. It runs at most maxConcurrentHandshakes at once;
// each is bounded by Config.HandshakeTimeout.
type Listener struct {
	cfg  *Config
	ln   net.Listener
	wg   sync.WaitGroup
	sem  chan struct{}
	done atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

const maxConcurrentHandshakes = 64

// Listen opens the handshake listener on addr (TCP), typically
// HandshakeAddr(dataAddr, port). Serve runs it.
func Listen(addr netip.AddrPort, cfg *Config) (*Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if _, _, err := tlsCertificate(cfg.Source); err != nil {
		return nil, fmt.Errorf("identity: listen %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("identity: listen %s: %w (a server that runs the TCP transport on its data port needs another handshake port)", addr, err)
	}
	return &Listener{cfg: cfg, ln: ln, sem: make(chan struct{}, maxConcurrentHandshakes), conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() netip.AddrPort {
	return l.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Serve accepts handshakes until Close; it returns nil after Close.
func (l *Listener) Serve() error {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.done.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("identity: accept: %w", err)
		}
		l.sem <- struct{}{}
		l.mu.Lock()
		if l.done.Load() {
			l.mu.Unlock()
			c.Close()
			<-l.sem
			return nil
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer func() {
				l.mu.Lock()
				delete(l.conns, c)
				l.mu.Unlock()
				c.Close()
				<-l.sem
				l.wg.Done()
			}()
			remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			s, err := l.accept(c, remote)
			if err != nil {
				l.cfg.Table.refused.Add(1)
				l.cfg.logger().Warn("identity: handshake refused", "remote", remote, "err", err)
			} else {
				l.cfg.Table.handshakes.Add(1)
			}
			if l.cfg.OnHandshake != nil {
				l.cfg.OnHandshake(remote, s, err)
			}
		}()
	}
}

// Close stops accepting, aborts handshakes in progress and waits for them.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.done.Store(true)
	err := l.ln.Close()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	return err
}

func (l *Listener) accept(raw net.Conn, remote netip.AddrPort) (*Session, error) {
	cfg := l.cfg
	fail := func(peer string, isRemote bool, err error) (*Session, error) {
		return nil, &HandshakeError{Op: "accept", Addr: remote, Peer: peer, Remote: isRemote, Err: err}
	}
	_ = raw.SetDeadline(time.Now().Add(cfg.timeout()))
	var own *x509.Certificate
	tc := tls.Server(raw, &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The client's chain is verified as an SVID after the handshake
		// (verifyPeer), so that a refusal reaches the client as a reason
		// rather than a bare TLS alert; crypto/tls still checks that the
		// client holds the certificate's key (CertificateVerify).
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, svid, err := tlsCertificate(cfg.Source)
			if err == nil {
				own = svid.Certificates[0]
			}
			return c, err
		},
		NextProtos: []string{ALPN},
		// No resumption: every handshake checks both SVIDs afresh, and no
		// ticket sits unread in the client's socket when it closes.
		SessionTicketsDisabled: true,
	})
	if err := tc.Handshake(); err != nil {
		return fail("", false, describeTLS(err))
	}
	st := tc.ConnectionState()
	typ, body, err := readMsg(tc)
	if err != nil {
		return fail("", false, fmt.Errorf("reading the client's hello: %w", describeTLS(err)))
	}
	if typ == msgRefuse {
		err := remoteRefusal(body)
		if own != nil {
			if oerr := checkOwn([]*x509.Certificate{own}, cfg.now()); oerr != nil {
				err = fmt.Errorf("%w; %w", err, oerr)
			}
		}
		return fail("", true, err)
	}
	if typ != msgHello || len(body) != 7 || body[0] != protoVersion {
		return fail("", false, fmt.Errorf("%w: unexpected message %d (%d bytes)", ErrProtocol, typ, len(body)))
	}
	now := cfg.now()
	peerID, err := verifyPeer(cfg.Source, st.PeerCertificates, now)
	if err == nil && !cfg.Allow.Match(peerID) {
		err = fmt.Errorf("%w: %s may not connect to this server (allowed: %s)", ErrNotAllowed, peerID, cfg.Allow)
	}
	if err != nil {
		sendRefuse(tc, err)
		return fail(peerID.String(), false, err)
	}
	clientPref, clientForced := Suite(body[1]), body[2] == 1
	serverPref, serverForced := cfg.suitePref()
	var suite Suite
	switch {
	case clientForced && serverForced && clientPref != serverPref:
		err := fmt.Errorf("%w: the client requires %s, this server %s (Config.Suite)", ErrProtocol, clientPref, serverPref)
		sendRefuse(tc, err)
		return fail(peerID.String(), false, err)
	case clientForced && clientPref.valid():
		suite = clientPref
	default:
		suite = chooseSuite(clientPref, serverPref, serverForced)
	}
	clientID := binary.BigEndian.Uint32(body[3:])
	localID, err := cfg.Table.reserve()
	if err != nil {
		sendRefuse(tc, err)
		return fail(peerID.String(), false, err)
	}
	master, err := st.ExportKeyingMaterial(exporterLabel, exporterContext(suite, clientID, localID), secretLen)
	if err != nil {
		cfg.Table.release(localID)
		return fail(peerID.String(), false, err)
	}
	exp := expiry(now, cfg.lifetime(), own, st.PeerCertificates[0])
	s, err := cfg.Table.establish(sessionParams{
		role: RoleServer, suite: suite, master: master, localID: localID, remoteID: clientID,
		peerAddr: remote.Addr(), peerID: peerID, expires: exp, now: now,
	})
	clear(master)
	if err != nil {
		cfg.Table.release(localID)
		return fail(peerID.String(), false, err)
	}
	// Installed before ACCEPT goes out, so the client's first sealed
	// request finds it; removed again if the client refuses it.
	accept := make([]byte, 10)
	accept[0] = protoVersion
	accept[1] = byte(suite)
	binary.BigEndian.PutUint32(accept[2:], localID)
	binary.BigEndian.PutUint32(accept[6:], uint32(min(exp.Sub(now), time.Duration(1<<32-1)*time.Second)/time.Second))
	if err := writeMsg(tc, msgAccept, accept); err != nil {
		s.Close()
		return fail(peerID.String(), false, err)
	}
	typ, body, err = readMsg(tc)
	switch {
	case err != nil:
		// The client may hold the keys (it got ACCEPT) or not; keeping the
		// session costs a slot until it expires, removing it could strand
		// a client that is already sending.
		cfg.logger().Debug("identity: client did not confirm the handshake; keeping the session until it expires", "remote", remote, "err", err)
	case typ == msgRefuse:
		s.Close()
		return fail(peerID.String(), true, remoteRefusal(body))
	case typ != msgDone:
		s.Close()
		return fail(peerID.String(), false, fmt.Errorf("%w: unexpected message %d", ErrProtocol, typ))
	}
	return s, nil
}
