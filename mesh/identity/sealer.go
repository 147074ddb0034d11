package identity

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// Server is the runtime.ServerSealer over a Table: the sessions its handshake
// Listener accepted.
type Server struct {
	t    *Table
	mode runtime.SealMode
}

var (
	_ runtime.ServerSealer = (*Server)(nil)
	_ runtime.ClientSealer = (*Client)(nil)
)

// NewServer makes the server side of the runtime hook.
func NewServer(t *Table, mode runtime.SealMode) *Server { return &Server{t: t, mode: mode} }

// Mode implements ServerSealer.
func (s *Server) Mode() runtime.SealMode { return s.mode }

// Room implements ServerSealer: the seal prefix in front, the tag behind.
func (s *Server) Room() (head, tail int) { return proto.SealedPrefixLen, proto.SealedTagLen }

// Loop implements ServerSealer.
func (s *Server) Loop(int) runtime.ServerLoopSealer { return &serverLoop{s: s.t.NewSealer()} }

type serverLoop struct{ s *Sealer }

func (l *serverLoop) OpenRequest(frame []byte, from netip.AddrPort) ([]byte, runtime.PeerIdentity, error) {
	plain, sess, err := l.s.Open(frame, from.Addr())
	if err != nil {
		return nil, runtime.PeerIdentity{}, err
	}
	return plain, runtime.PeerIdentity{ID: sess.peerStr, Session: uint64(sess.localID)}, nil
}

func (l *serverLoop) SealReply(buf []byte, start, end int, peer runtime.PeerIdentity) ([]byte, error) {
	sess := l.s.t.Lookup(uint32(peer.Session))
	if sess == nil {
		return nil, l.s.refuse(ReasonUnknownSession) // expired while the handler ran
	}
	return l.s.Seal(buf, start, end, sess)
}

// Client is the ClientSealer: it dials sessions with cfg and seals calls
// under them.
type Client struct {
	cfg *Config
	// RenewBefore: Prepare handshakes again when the session has less
	// than this left (default 1 minute), so calls never meet its end.
	RenewBefore time.Duration

	mu      sync.Mutex
	dialing map[netip.AddrPort]*dialCall
}

type dialCall struct {
	done chan struct{}
	err  error
}

// NewClient makes the client side of the runtime hook; cfg.Table holds
// its sessions.
func NewClient(cfg *Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, RenewBefore: time.Minute, dialing: map[netip.AddrPort]*dialCall{}}, nil
}

// Prepare implements ClientSealer. Concurrent callers for one server
// share one handshake.
func (c *Client) Prepare(ctx context.Context, server netip.AddrPort) error {
	if s := c.cfg.Table.Client(server); s != nil && s.expires.Sub(c.cfg.now()) > c.RenewBefore {
		return nil
	}
	c.mu.Lock()
	if s := c.cfg.Table.Client(server); s != nil && s.expires.Sub(c.cfg.now()) > c.RenewBefore {
		c.mu.Unlock()
		return nil
	}
	d, ok := c.dialing[server]
	if !ok {
		d = &dialCall{done: make(chan struct{})}
		c.dialing[server] = d
		go func() {
			// The handshake is not tied to one caller's context: the
			// others waiting on it would lose it with that caller.
			hctx, cancel := context.WithTimeout(context.Background(), c.cfg.timeout())
			defer cancel()
			_, d.err = Dial(hctx, server, c.cfg)
			c.mu.Lock()
			delete(c.dialing, server)
			c.mu.Unlock()
			close(d.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-d.done:
		return d.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Overhead implements ClientSealer.
func (c *Client) Overhead() int { return proto.SealedOverhead }

// Loop implements ClientSealer.
func (c *Client) Loop(int) runtime.ClientLoopSealer { return &clientLoop{s: c.cfg.Table.NewSealer()} }

type clientLoop struct{ s *Sealer }

func (l *clientLoop) SealRequest(dst, plain []byte, server netip.AddrPort) ([]byte, error) {
	sess := l.s.t.Client(server)
	if sess == nil {
		return nil, l.s.refuse(ReasonNoSession)
	}
	return l.s.SealTo(dst, plain, sess)
}

// HasSession implements runtime.ClientLoopSealer.
func (l *clientLoop) HasSession(server netip.AddrPort) bool { return l.s.t.Client(server) != nil }

func (l *clientLoop) OpenReply(frame []byte, from netip.AddrPort) ([]byte, runtime.PeerIdentity, error) {
	plain, sess, err := l.s.Open(frame, from.Addr())
	if err != nil {
		return nil, runtime.PeerIdentity{}, err
	}
	return plain, runtime.PeerIdentity{ID: sess.peerStr, Session: uint64(sess.localID)}, nil
}
