package runtime

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/zerohop/zerohop/runtime/internal/engine"
)

// Sealed frames (proto.FlagSealed) are authenticated and encrypted with
// keys two peers agreed in a handshake off the data path; the runtime
// does not know how. It calls a sealer around dispatch on the server and
// around every transmission on the client, and mesh/identity implements
// the sealers (SPIFFE identities, mutual TLS 1.3, AEAD frames):
//
//	srv, _ := runtime.Listen("udp", addr, runtime.WithSealer(identity.NewServer(table, runtime.SealStrict)))
//	c, _ := runtime.Dial("udp", addr, runtime.WithClientSealer(identityClient))
//
// On a server, a frame proto.Parse rejects as sealed goes to the loop's
// ServerLoopSealer.OpenRequest, in place in the receive buffer (the UMEM
// frame on the AF_XDP path); a frame that does not open is dropped and
// counted (Dropped["sealed"]), never answered; the plaintext request is
// dispatched with its peer's identity (Request.Identity) and its reply —
// the handler's or the runtime's own error answer — is built inside the
// room Room asks for and sealed with SealReply. What is done with
// unsealed requests is the SealMode's. PING and PONG are never sealed.
//
// On a client, Prepare runs on the caller's goroutine before each call
// (the handshake, when no live session exists; at once otherwise), each
// copy sent is sealed anew (a retransmission is a new packet, not a
// replay), a sealed reply is opened before it completes its call, and a
// clear reply to a sealed call is ignored and counted
// (ClientStats.Unsealed): anyone can forge one.

// SealMode is how a server with a sealer treats requests that are not
// sealed.
type SealMode uint8

const (
	// SealPermissive: sealed requests are opened and carry their peer's
	// identity; unsealed ones are served as before, with no identity, and
	// counted (LoopStats.Unsealed). For migrating a fleet one side at a
	// time.
	SealPermissive SealMode = 1
	// SealStrict: an unsealed REQUEST is answered DENIED without reaching
	// admission or a handler (counted as LoopStats.UnsealedDenied). PING
	// and PONG stay clear in both modes, for health checks.
	SealStrict SealMode = 2
)

func (m SealMode) String() string {
	switch m {
	case SealPermissive:
		return "permissive"
	case SealStrict:
		return "strict"
	}
	return "off"
}

// PeerIdentity is who sent a request, as a sealer says when it opens it
// and as it needs it again to seal the reply.
type PeerIdentity struct {
	// ID is the peer's authenticated identity (a SPIFFE ID); "" for an
	// unsealed request. Made once per session, so copying it does not
	// allocate.
	ID string
	// Session is the sealer's handle for the reply, opaque to the runtime;
	// 0 for an unsealed request.
	Session uint64
}

// Sealed reports whether the request came sealed.
func (p PeerIdentity) Sealed() bool { return p.Session != 0 }

// ServerSealer is what a server's loops call around dispatch
// (WithSealer).
type ServerSealer interface {
	// Mode says what to do with unsealed requests.
	Mode() SealMode
	// Room is the bytes SealReply needs in the reply buffer before the
	// reply frame (head) and after it (tail).
	Room() (head, tail int)
	// Loop returns the half one event loop uses, called once per loop
	// before it starts; only that loop calls it afterwards.
	Loop(loop int) ServerLoopSealer
}

// ServerLoopSealer is one loop's sealer. Its methods never block, never
// allocate and never panic; they refuse bad input with an error, which
// the runtime counts as one drop reason ("sealed"): the reasons are the
// sealer's to count.
type ServerLoopSealer interface {
	// OpenRequest opens, in place, a datagram (or stream frame) for which
	// proto.Parse returned proto.ErrSealed, received from from. plain is
	// the plaintext frame, a sub-slice of frame; peer goes to the Request
	// and, with the reply, to SealReply. On error the frame is dropped —
	// never answered — and its bytes are undefined.
	OpenRequest(frame []byte, from netip.AddrPort) (plain []byte, peer PeerIdentity, err error)
	// SealReply seals, in place, the reply frame buf[start:end] for the
	// session peer came from (Room's head bytes free before start, tail
	// bytes of buf after end) and returns the frame to send, a sub-slice
	// of buf. On error the reply is dropped and counted.
	SealReply(buf []byte, start, end int, peer PeerIdentity) (sealed []byte, err error)
}

// ClientSealer is what a client engine calls around the calls of a Client
// made WithClientSealer. It must be comparable (a pointer): an engine
// keeps one set of loop halves per ClientSealer, shared by every Client
// that uses it.
type ClientSealer interface {
	// Prepare makes sure a live session with the server at data address
	// server exists, running the handshake if not (or if it ends soon).
	// It blocks: the runtime calls it on the caller's goroutine before
	// each call (not before a Ping, which stays clear). With a live
	// session it returns at once without allocating; concurrent callers
	// for one server should share one handshake.
	Prepare(ctx context.Context, server netip.AddrPort) error
	// Overhead is what SealRequest adds to a frame.
	Overhead() int
	// Loop returns a half for one user: once for each loop of each engine
	// the sealer is used on (that loop alone calls it afterwards), and
	// once more per engine with loop −1, for the first copies callers
	// send themselves while the loop sleeps, which the engine calls under
	// a lock.
	Loop(loop int) ClientLoopSealer
}

// ClientLoopSealer is one client loop's sealer; it never blocks,
// allocates or panics.
type ClientLoopSealer interface {
	// SealRequest seals the request frame plain into dst (the transmit
	// buffer: len(plain)+Overhead bytes of capacity, not overlapping
	// plain) under the session with server, leaving plain as it was for
	// retransmissions: each transmission is sealed anew, under a new
	// packet number, so a retransmission is not a replay.
	SealRequest(dst, plain []byte, server netip.AddrPort) (sealed []byte, err error)
	// OpenReply opens, in place, a datagram from from for which
	// proto.Parse returned proto.ErrSealed.
	OpenReply(frame []byte, from netip.AddrPort) (plain []byte, peer PeerIdentity, err error)
	// HasSession reports whether SealRequest finds a live session with
	// server: a call fails over only to an endpoint it can seal for (the
	// loop cannot run a handshake).
	HasSession(server netip.AddrPort) bool
}

// WithSealer makes the server open sealed requests and seal their replies
// with s, and treat unsealed requests as s.Mode() says. mesh/identity's
// Server is one.
func WithSealer(s ServerSealer) Option {
	return func(c *config) error {
		if s == nil {
			return fmt.Errorf("runtime: WithSealer: nil sealer")
		}
		if m := s.Mode(); m != SealPermissive && m != SealStrict {
			return fmt.Errorf("runtime: WithSealer: mode %d: want SealPermissive or SealStrict", m)
		}
		if head, tail := s.Room(); head < 0 || tail < 0 || head+tail > 1024 {
			return fmt.Errorf("runtime: WithSealer: room %d before and %d after a reply: want 0 to 1024 bytes in all", head, tail)
		}
		c.sealer = s
		return nil
	}
}

// WithClientSealer makes the Client seal its calls (not its Pings) with
// s: Prepare before each call, each copy sealed on the loop, replies
// opened before they complete a call, clear replies to sealed calls
// ignored (ClientStats.Unsealed). mesh/identity's Client is one.
func WithClientSealer(s ClientSealer) ClientOption {
	return func(c *clientConfig) error {
		if s == nil {
			return fmt.Errorf("runtime: WithClientSealer: nil sealer")
		}
		if n := s.Overhead(); n < 0 || n > 1024 {
			return fmt.Errorf("runtime: WithClientSealer: overhead %d: want 0 to 1024 bytes", n)
		}
		c.sealer = s
		return nil
	}
}

// serverLoopSealer is a ServerLoopSealer as the engine calls it.
type serverLoopSealer struct{ s ServerLoopSealer }

func (l serverLoopSealer) OpenRequest(frame []byte, from netip.AddrPort) ([]byte, engine.Identity, error) {
	plain, peer, err := l.s.OpenRequest(frame, from)
	return plain, engine.Identity(peer), err
}

func (l serverLoopSealer) SealReply(buf []byte, start, end int, peer engine.Identity) ([]byte, error) {
	return l.s.SealReply(buf, start, end, PeerIdentity(peer))
}

// installSealer gives each loop's dispatcher its half of the server's
// sealer.
func (s *Server) installSealer() {
	sl := s.cfg.sealer
	if sl == nil {
		return
	}
	head, tail := sl.Room()
	for i, l := range s.loops {
		l.Dispatcher.SetSealer(serverLoopSealer{sl.Loop(i)}, sl.Mode() == SealStrict, head, tail)
	}
}

// clientSealing is one ClientSealer on one engine: a half per loop, and
// the callers' half behind a lock.
type clientSealing struct {
	s        ClientSealer
	overhead int
	loops    []ClientLoopSealer

	mu     sync.Mutex
	caller ClientLoopSealer
}

// sealing returns the engine's halves of s, made on first use.
func (e *Engine) sealing(s ClientSealer) (*clientSealing, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClientClosed
	}
	if cs := e.sealers[s]; cs != nil {
		return cs, nil
	}
	cs := &clientSealing{s: s, overhead: s.Overhead(), caller: s.Loop(-1)}
	for i := range e.loops {
		cs.loops = append(cs.loops, s.Loop(i))
	}
	if e.sealers == nil {
		e.sealers = map[ClientSealer]*clientSealing{}
	}
	e.sealers[s] = cs
	return cs, nil
}

// sealDirect seals a first copy its caller sends itself.
func (cs *clientSealing) sealDirect(dst, plain []byte, server netip.AddrPort) ([]byte, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.caller.SealRequest(dst, plain, server)
}
