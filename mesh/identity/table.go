package identity

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// TableConfig sizes a Table and sets its key update policy; zero fields
// take the defaults.
type TableConfig struct {
	// MaxSessions bounds the sessions held at once (default 16,384, at
	// most 2^20): a handshake beyond it is refused.
	MaxSessions int
	// KeyPackets is how many frames one key seals before the sender
	// updates it: default 2^22, half of RFC 9001 §6.6's confidentiality
	// limit for AES-128-GCM (2^23 packets per key), at most 2^23 and at
	// least MinKeyPackets.
	KeyPackets uint64
	// KeyLifetime updates a key after this long once it has sealed
	// MinKeyPackets frames (default 10 minutes).
	KeyLifetime time.Duration
	// KeyGrace is how long a receiver keeps the previous key after the
	// first frame under the new one, for frames sealed before the update
	// that arrive late (default 10 s; the replay window bounds them too).
	KeyGrace time.Duration
}

// Defaults of TableConfig.
const (
	DefaultMaxSessions = 16384
	DefaultKeyPackets  = 1 << 22
	DefaultKeyLifetime = 10 * time.Minute
	DefaultKeyGrace    = 10 * time.Second

	// MinKeyPackets is the fewest frames a key seals before any update,
	// twice the replay window. A receiver finds the key of a frame from
	// one key-phase bit, so it follows updates one generation at a time
	// and must open a frame of each generation before one of the next;
	// with this many frames per generation only the loss of more than a
	// replay window's worth of frames in a row, at an update, can skip
	// one (reordering deeper than the window is refused anyway), and the
	// frames lost then are recovered by retransmission once any frame of
	// the skipped generation arrives. A session whose every frame of a
	// generation was lost stops opening and must handshake again.
	MinKeyPackets = 2 * ReplayWindow

	slotBits = 20
	slotMask = 1<<slotBits - 1
)

// Table holds the sessions of one process, both those it accepted and
// those it dialed, indexed by the session id in received frames. The id is
// the session's slot in the table in its low 20 bits and a generation
// counter in the high 12 bits, so a lookup is an array index and a
// compare, and a slot reused after a session ended never matches the old
// id. Lookups are lock-free; adding and removing sessions (handshakes,
// expiry) takes a mutex.
type Table struct {
	cfg   TableConfig
	slots []atomic.Pointer[Session]

	mu      sync.Mutex
	free    []uint32
	slotGen []uint16
	// clients maps a server's data address to the session dialed to it,
	// copied on write: the client's loops read it on every request.
	clients atomic.Pointer[map[netip.AddrPort]*Session]

	// sealers are every Sealer made, whose per-reason counters Stats sums.
	sealers atomic.Pointer[[]*Sealer]
	sealMu  sync.Mutex

	handshakes, refused atomic.Uint64
}

// NewTable makes an empty table.
func NewTable(cfg TableConfig) (*Table, error) {
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxSessions < 0 || cfg.MaxSessions > slotMask {
		return nil, fmt.Errorf("identity: TableConfig.MaxSessions %d out of range 1–%d", cfg.MaxSessions, slotMask)
	}
	if cfg.KeyPackets == 0 {
		cfg.KeyPackets = DefaultKeyPackets
	}
	if cfg.KeyPackets < MinKeyPackets {
		return nil, fmt.Errorf("identity: TableConfig.KeyPackets %d is below MinKeyPackets (%d)", cfg.KeyPackets, MinKeyPackets)
	}
	if cfg.KeyPackets > aesGCMConfidentialityLimit {
		return nil, fmt.Errorf("identity: TableConfig.KeyPackets %d exceeds the 2^23 packets RFC 9001 §6.6 allows one AES-GCM key", cfg.KeyPackets)
	}
	if cfg.KeyLifetime == 0 {
		cfg.KeyLifetime = DefaultKeyLifetime
	}
	if cfg.KeyGrace == 0 {
		cfg.KeyGrace = DefaultKeyGrace
	}
	t := &Table{cfg: cfg, slots: make([]atomic.Pointer[Session], cfg.MaxSessions+1), slotGen: make([]uint16, cfg.MaxSessions+1)}
	// Slot 0 is never used, so that no session id is 0.
	for i := cfg.MaxSessions; i >= 1; i-- {
		t.free = append(t.free, uint32(i))
	}
	var seed [2]byte
	_, _ = rand.Read(seed[:])
	for i := range t.slotGen {
		// A random start makes ids differ between runs of a process; the
		// ids are not secret, the AEAD authenticates them.
		t.slotGen[i] = binary.LittleEndian.Uint16(seed[:]) + uint16(i)
	}
	m := map[netip.AddrPort]*Session{}
	t.clients.Store(&m)
	return t, nil
}

// Config returns the table's configuration with defaults filled in.
func (t *Table) Config() TableConfig { return t.cfg }

// ErrTableFull: the table holds MaxSessions sessions.
var ErrTableFull = errors.New("identity: session table full (TableConfig.MaxSessions)")

// reserve takes a free slot and returns the session id for it.
func (t *Table) reserve() (uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.free) == 0 {
		return 0, ErrTableFull
	}
	slot := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	g := t.slotGen[slot] + 1
	if g&0xfff == 0 {
		g++
	}
	t.slotGen[slot] = g
	return uint32(g&0xfff)<<slotBits | slot, nil
}

// release returns an unused reserved id.
func (t *Table) release(id uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	slot := id & slotMask
	if t.slots[slot].Load() == nil {
		t.free = append(t.free, slot)
	}
}

// install publishes s under its reserved id.
func (t *Table) install(s *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slots[s.localID&slotMask].Store(s)
	if s.role == RoleClient {
		old := *t.clients.Load()
		m := make(map[netip.AddrPort]*Session, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		m[s.server] = s // a newer session replaces the older for new requests
		t.clients.Store(&m)
	}
}

func (t *Table) remove(s *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	slot := s.localID & slotMask
	if t.slots[slot].Load() == s {
		t.slots[slot].Store(nil)
		t.free = append(t.free, slot)
	}
	if s.role == RoleClient {
		old := *t.clients.Load()
		if old[s.server] == s {
			m := make(map[netip.AddrPort]*Session, len(old))
			for k, v := range old {
				if v != s {
					m[k] = v
				}
			}
			t.clients.Store(&m)
		}
	}
}

// Lookup returns the session whose local id is id, or nil.
func (t *Table) Lookup(id uint32) *Session {
	slot := id & slotMask
	if int(slot) >= len(t.slots) {
		return nil
	}
	s := t.slots[slot].Load()
	if s == nil || s.localID != id {
		return nil
	}
	return s
}

// Client returns the newest live session dialed to the server at data
// address server, or nil.
func (t *Table) Client(server netip.AddrPort) *Session {
	s := (*t.clients.Load())[server]
	if s == nil || s.closed.Load() {
		return nil
	}
	return s
}

// Len is the number of sessions held.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.slots) - 1 - len(t.free)
}

// Maintain runs the table's timers at now: it updates sending keys older
// than KeyLifetime that sealed at least MinKeyPackets frames, drops previous receive
// keys past KeyGrace, and closes sessions past their expiry. Run calls it
// every second; a caller with its own clock (a test) calls it directly.
// It allocates (a key update derives keys) and is not for the data path.
func (t *Table) Maintain(now time.Time) {
	nowNs := now.UnixNano()
	for i := 1; i < len(t.slots); i++ {
		s := t.slots[i].Load()
		if s == nil {
			continue
		}
		if !now.Before(s.expires) {
			t.remove(s)
			continue
		}
		w := s.send.word.Load()
		gen := uint8(w >> 56)
		if k := s.send.keys[gen&3].Load(); k != nil && nowNs-k.born >= int64(t.cfg.KeyLifetime) && w&pnMask-k.start.Load() >= MinKeyPackets {
			s.rotateSend(gen, nowNs)
		}
		if p := s.recv.prev.Load(); p != nil && nowNs-p.retired.Load() >= int64(t.cfg.KeyGrace) {
			s.recv.mu.Lock()
			if s.recv.prev.Load() == p {
				s.recv.prev.Store(nil)
			}
			s.recv.mu.Unlock()
		}
	}
}

// Run calls Maintain every interval (1 s if 0) until ctx ends.
func (t *Table) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.Maintain(now)
		}
	}
}

// CloseAll removes every session.
func (t *Table) CloseAll() {
	for i := 1; i < len(t.slots); i++ {
		if s := t.slots[i].Load(); s != nil {
			t.remove(s)
		}
	}
}
