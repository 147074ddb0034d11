package identity

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/zerohop/zerohop/proto"
)

// Role is which end of the handshake a session is: a client seals
// requests and opens responses, a server the other way round.
type Role uint8

const (
	RoleClient Role = 1
	RoleServer Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleServer:
		return "server"
	}
	return "role?"
}

// AEAD limits from RFC 9001 §6.6 (Limits on AEAD Usage, after
// draft-irtf-cfrg-aead-limits): the confidentiality limit is how many
// packets one key may seal, the integrity limit how many forgeries a
// receiver may try to open before the session must end.
const (
	aesGCMConfidentialityLimit = 1 << 23
	aesGCMIntegrityLimit       = 1 << 52
	chachaIntegrityLimit       = 1 << 36
)

func (s Suite) integrityLimit() uint64 {
	if s == SuiteAES128GCM {
		return aesGCMIntegrityLimit
	}
	return chachaIntegrityLimit
}

// Session is an established pair of sealing keys with one peer: made by
// Dial (client) or a Listener (server), held in a Table, found by the
// session id in the frames it receives. Its methods are safe for
// concurrent use; its frames are sealed and opened through a Sealer.
type Session struct {
	table    *Table
	localID  uint32 // the id peers write into frames for us: our table slot
	remoteID uint32 // the id we write into frames we send
	role     Role
	suite    Suite
	peerAddr netip.Addr     // the IP the handshake came from (unmapped)
	server   netip.AddrPort // client sessions: the server's data address
	peerID   spiffeid.ID
	peerStr  string
	created  time.Time
	expires  time.Time

	send sendDir
	recv recvDir

	closed atomic.Bool

	opened       atomic.Uint64
	replays      atomic.Uint64
	tooOld       atomic.Uint64
	authFailures atomic.Uint64
	sendRotated  atomic.Uint64
	recvRotated  atomic.Uint64
}

// sendDir is the sending direction: one atomic word hands out packet
// numbers and names the key generation they belong to, so that every
// packet number is sealed under exactly one generation and numbers of a
// later generation are always higher (the receiver's key-phase rule
// depends on it).
type sendDir struct {
	word  atomic.Uint64 // gen<<56 | next packet number
	keys  [4]atomic.Pointer[sendKey]
	mu    sync.Mutex // serializes key updates
	limit uint64     // packets per key before an update
}

type sendKey struct {
	*trafficKey
	start atomic.Uint64 // first packet number of this generation (a lower bound until the update completes)
	born  int64         // unix nanoseconds
}

const pnMask = proto.MaxPacketNumber

// recvDir is the receiving direction: the current key, the next
// generation precomputed, the previous one kept for its grace window, and
// the replay window.
type recvDir struct {
	mu     sync.Mutex // key promotion and the replay window's updates
	cur    atomic.Pointer[recvKey]
	next   atomic.Pointer[recvKey]
	prev   atomic.Pointer[recvKey]
	window replayWindow
}

type recvKey struct {
	*trafficKey
	minPN   atomic.Uint64 // lowest packet number opened under it (MaxUint64: none yet)
	born    atomic.Int64  // unix nanoseconds when it became current
	retired atomic.Int64  // unix nanoseconds when it became previous
}

func (d *sendDir) init(suite Suite, secret [secretLen]byte, limit uint64, now int64) error {
	k, err := newTrafficKey(suite, secret, 0)
	if err != nil {
		return err
	}
	d.limit = limit
	d.keys[0].Store(&sendKey{trafficKey: k, born: now})
	return nil
}

func (d *recvDir) init(suite Suite, secret [secretLen]byte, now int64) error {
	k, err := newTrafficKey(suite, secret, 0)
	if err != nil {
		return err
	}
	n, err := k.next(suite)
	if err != nil {
		return err
	}
	cur := &recvKey{trafficKey: k}
	cur.born.Store(now)
	cur.minPN.Store(^uint64(0))
	nk := &recvKey{trafficKey: n}
	nk.minPN.Store(^uint64(0))
	d.cur.Store(cur)
	d.next.Store(nk)
	return nil
}

// LocalID is the session id in frames this side receives.
func (s *Session) LocalID() uint32 { return s.localID }

// RemoteID is the session id this side writes into frames it sends.
func (s *Session) RemoteID() uint32 { return s.remoteID }

// Role is which end of the handshake this side was.
func (s *Session) Role() Role { return s.role }

// Suite is the session's AEAD.
func (s *Session) Suite() Suite { return s.suite }

// Peer is the peer's authenticated SPIFFE ID.
func (s *Session) Peer() spiffeid.ID { return s.peerID }

// PeerString is Peer as a string, made once at the handshake: reading it
// does not allocate.
func (s *Session) PeerString() string { return s.peerStr }

// PeerAddr is the IP address the peer did the handshake from; frames of
// this session from any other address are refused (ReasonAddress).
func (s *Session) PeerAddr() netip.Addr { return s.peerAddr }

// Expires is when the session ends: the earlier of the two SVIDs' expiry
// and the configured session lifetime.
func (s *Session) Expires() time.Time { return s.expires }

// Closed reports whether the session was closed or expired.
func (s *Session) Closed() bool { return s.closed.Load() }

// Close removes the session from its table; frames for it are refused
// from then on (ReasonUnknownSession).
func (s *Session) Close() { s.table.remove(s) }

// rotateSend performs a key update of the sending direction if the
// current generation is still gen: the next key is installed first, then
// the generation in the word is bumped, so a packet number handed out for
// the new generation always finds its key.
func (s *Session) rotateSend(gen uint8, now int64) {
	d := &s.send
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.word.Load()
	if uint8(w>>56) != gen {
		return // another sealer updated it already
	}
	cur := d.keys[gen&3].Load()
	nk, err := cur.next(s.suite)
	if err != nil {
		return // cannot happen with our constant lengths; keep the old key
	}
	k := &sendKey{trafficKey: nk, born: now}
	k.start.Store(w & pnMask)
	d.keys[(gen+1)&3].Store(k)
	for !d.word.CompareAndSwap(w, w+1<<56) {
		w = d.word.Load()
	}
	k.start.Store(w & pnMask)
	s.sendRotated.Add(1)
}

// promoteRecv makes next the current receive key after a frame opened
// under it, keeping the old current one as previous for the grace
// window. Called with recv.mu held; cur is the key current when the frame
// was selected.
func (s *Session) promoteRecv(cur *recvKey, pn uint64, now int64) {
	d := &s.recv
	if d.cur.Load() != cur {
		return // another loop promoted it
	}
	nk := d.next.Load()
	after, err := nk.next(s.suite)
	if err != nil {
		return
	}
	cur.retired.Store(now)
	nk.born.Store(now)
	nk.minPN.Store(pn)
	na := &recvKey{trafficKey: after}
	na.minPN.Store(^uint64(0))
	d.prev.Store(cur)
	d.cur.Store(nk)
	d.next.Store(na)
	s.recvRotated.Add(1)
}

// sessionParams is what a handshake agreed.
type sessionParams struct {
	role     Role
	suite    Suite
	master   []byte // the TLS exporter's secret
	localID  uint32 // reserved in the table
	remoteID uint32
	peerAddr netip.Addr
	server   netip.AddrPort // client sessions
	peerID   spiffeid.ID
	expires  time.Time
	now      time.Time
}

// establish derives the keys of p and installs the session under its
// reserved id.
func (t *Table) establish(p sessionParams) (*Session, error) {
	c2s, s2c := directionSecrets(p.master)
	s := &Session{
		table: t, localID: p.localID, remoteID: p.remoteID, role: p.role, suite: p.suite,
		peerAddr: p.peerAddr.Unmap(), server: p.server, peerID: p.peerID, peerStr: p.peerID.String(),
		created: p.now, expires: p.expires,
	}
	sendSecret, recvSecret := c2s, s2c
	if p.role == RoleServer {
		sendSecret, recvSecret = s2c, c2s
	}
	now := p.now.UnixNano()
	if err := s.send.init(p.suite, sendSecret, t.cfg.KeyPackets, now); err != nil {
		return nil, err
	}
	if err := s.recv.init(p.suite, recvSecret, now); err != nil {
		return nil, err
	}
	clear(c2s[:])
	clear(s2c[:])
	t.install(s)
	return s, nil
}
