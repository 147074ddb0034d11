package identity

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// Offsets into a GWIR header that sealing rewrites.
const (
	lengthOffset = 5
	kindOffset   = 7
	flagsOffset  = 22
)

// Sealer seals and opens frames for the sessions of one Table. It holds
// the scratch space and counters of one goroutine — one event loop — and
// must not be used by two at once; make one per loop (Table.NewSealer).
// Its methods never allocate and never panic on any input.
type Sealer struct {
	t     *Table
	nonce [ivLen]byte
	// Per-reason refusals seen by this sealer, read by Table.Stats.
	drops [NumReasons]atomic.Uint64
	_     [64]byte // keep the next loop's Sealer off this cache line
}

// NewSealer makes a Sealer for one goroutine; the table keeps it for its
// counters.
func (t *Table) NewSealer() *Sealer {
	s := &Sealer{t: t}
	t.sealMu.Lock()
	defer t.sealMu.Unlock()
	var list []*Sealer
	if p := t.sealers.Load(); p != nil {
		list = append(list, *p...)
	}
	list = append(list, s)
	t.sealers.Store(&list)
	return s
}

func (s *Sealer) refuse(r Reason) Reason {
	s.drops[r].Add(1)
	return r
}

// Seal seals, in place, the plaintext frame buf[start:end] (a header and
// its payload, as an encoder wrote it) for sess, and returns the sealed
// frame, buf[start-proto.SealedPrefixLen : end+proto.SealedTagLen]: the
// header moves 12 bytes towards the front (its length and FlagSealed
// rewritten), the seal prefix takes its old place, the payload is
// encrypted where it lies and the tag follows it. The caller leaves
// proto.SealedPrefixLen bytes free before start and proto.SealedTagLen of
// capacity after end. A client seals REQUESTs, a server RESPONSEs.
func (s *Sealer) Seal(buf []byte, start, end int, sess *Session) ([]byte, error) {
	if start < proto.SealedPrefixLen || end < start+proto.HeaderLen || end > len(buf) || cap(buf)-end < proto.SealedTagLen {
		return nil, s.refuse(ReasonRoom)
	}
	// Checked before anything moves, so a refused frame is left as it was.
	if r := sealable(buf[start:end], sess); r != 0 {
		return nil, s.refuse(r)
	}
	f := buf[start-proto.SealedPrefixLen : end+proto.SealedTagLen]
	copy(f, buf[start:start+proto.HeaderLen])
	body := f[proto.SealedHeaderLen : len(f)-proto.SealedTagLen]
	return s.sealFrom(f, body, body, sess)
}

// SealTo seals the plaintext frame plain into dst, leaving plain as it
// was (a client keeps its request for retransmissions, each sealed anew
// under a new packet number). dst needs len(plain)+proto.SealedOverhead
// bytes of capacity and must not overlap plain.
func (s *Sealer) SealTo(dst, plain []byte, sess *Session) ([]byte, error) {
	n := len(plain) + proto.SealedOverhead
	if len(plain) < proto.HeaderLen || cap(dst) < n {
		return nil, s.refuse(ReasonRoom)
	}
	if r := sealable(plain, sess); r != 0 {
		return nil, s.refuse(r)
	}
	f := dst[:n]
	copy(f, plain[:proto.HeaderLen])
	body := f[proto.SealedHeaderLen : n-proto.SealedTagLen]
	// The AEAD encrypts from plain straight into body; they must not
	// overlap, and do not as the caller promised.
	return s.sealFrom(f, body, plain[proto.HeaderLen:], sess)
}

// sealable reports why the plaintext frame plain cannot be sealed for
// sess, or 0.
func sealable(plain []byte, sess *Session) Reason {
	if sess == nil || sess.closed.Load() {
		return ReasonNoSession
	}
	want := proto.KindResponse
	if sess.role == RoleClient {
		want = proto.KindRequest
	}
	if proto.Kind(plain[kindOffset]) != want {
		return ReasonDirection
	}
	if len(plain)+proto.SealedOverhead-proto.HeaderLen > proto.MaxPayload {
		return ReasonTooLarge
	}
	if binary.BigEndian.Uint16(plain[flagsOffset:])&uint16(proto.FlagSealed) != 0 {
		return ReasonHeader // already sealed
	}
	return 0
}

// sealFrom seals src (the plaintext payload) into body, the payload area
// of f, whose first 24 bytes are the plaintext header that sealable
// accepted; src is body (in place) or a buffer not overlapping f.
func (s *Sealer) sealFrom(f, body, src []byte, sess *Session) ([]byte, error) {
	d := &sess.send
	w := d.word.Add(1) - 1
	gen, pn := uint8(w>>56), w&pnMask
	if pn >= pnMask-1 {
		sess.table.remove(sess)
		return nil, s.refuse(ReasonExhausted)
	}
	k := d.keys[gen&3].Load()
	if k == nil || k.gen != gen {
		// Only a sealer stalled across four key updates gets here: never
		// seal under a key that is not its packet number's.
		return nil, s.refuse(ReasonExhausted)
	}
	if pn-k.start.Load() >= d.limit {
		sess.rotateSend(gen, time.Now().UnixNano())
	}
	flags := binary.BigEndian.Uint16(f[flagsOffset:])
	binary.BigEndian.PutUint16(f[lengthOffset:], uint16(len(f)-proto.HeaderLen))
	binary.BigEndian.PutUint16(f[flagsOffset:], flags|uint16(proto.FlagSealed))
	proto.PutSealPrefix(f, sess.remoteID, gen&1, pn)
	k.nonce(&s.nonce, pn)
	k.aead.Seal(body[:0], s.nonce[:], src, f[:proto.SealedHeaderLen])
	return f, nil
}

// Open authenticates and decrypts, in place, the sealed frame that
// arrived from the address from, and returns the plaintext frame and its
// session. The plaintext is a sub-slice of frame starting
// proto.SealedPrefixLen bytes in (the header is moved there, its length
// and flags rewritten as if never sealed), ready for proto.Parse. On
// failure the error is a Reason; the frame's bytes are then undefined and
// the frame must be dropped, never answered.
func (s *Sealer) Open(frame []byte, from netip.Addr) ([]byte, *Session, error) {
	f, err := proto.ParseSealed(frame)
	if err != nil {
		return nil, nil, s.refuse(ReasonHeader)
	}
	sess := s.t.Lookup(f.SessionID())
	if sess == nil {
		return nil, nil, s.refuse(ReasonUnknownSession)
	}
	if sess.peerAddr != from.Unmap() {
		return nil, sess, s.refuse(ReasonAddress)
	}
	want := proto.KindRequest
	if sess.role == RoleClient {
		want = proto.KindResponse
	}
	if f.Kind() != want {
		return nil, sess, s.refuse(ReasonDirection)
	}
	d := &sess.recv
	pn := f.PacketNumber()
	if r := d.window.check(pn); r != 0 {
		sess.countRefusal(r)
		return nil, sess, s.refuse(r)
	}
	// Key selection (RFC 9001 §6.3, §6.5): the current phase opens with
	// the current key; the other phase with the previous key if the packet
	// number is below the first one opened under the current key (a frame
	// sealed before the update), else with the next key, which a success
	// then promotes.
	cur := d.cur.Load()
	k, promote := cur, false
	if f.KeyPhase() != cur.gen&1 {
		if p := d.prev.Load(); p != nil && pn < cur.minPN.Load() {
			k = p
		} else {
			k, promote = d.next.Load(), true
		}
	}
	ct := frame[proto.SealedHeaderLen:]
	k.nonce(&s.nonce, pn)
	plain, err := k.aead.Open(ct[:0], s.nonce[:], ct, frame[:proto.SealedHeaderLen])
	if err != nil {
		if sess.authFailures.Add(1) >= sess.suite.integrityLimit() {
			sess.table.remove(sess)
		}
		return nil, sess, s.refuse(ReasonAuth)
	}
	d.mu.Lock()
	if promote {
		sess.promoteRecv(cur, pn, time.Now().UnixNano())
	} else if pn < k.minPN.Load() {
		k.minPN.Store(pn)
	}
	r := d.window.update(pn)
	d.mu.Unlock()
	if r != 0 {
		sess.countRefusal(r)
		return nil, sess, s.refuse(r)
	}
	sess.opened.Add(1)
	// Move the header over the seal prefix so that the plaintext frame is
	// contiguous: header then payload, as Parse expects.
	out := frame[proto.SealedPrefixLen : proto.SealedHeaderLen+len(plain)]
	copy(out, frame[:proto.HeaderLen])
	binary.BigEndian.PutUint16(out[lengthOffset:], uint16(len(plain)))
	binary.BigEndian.PutUint16(out[flagsOffset:], binary.BigEndian.Uint16(out[flagsOffset:])&^uint16(proto.FlagSealed))
	return out, sess, nil
}

func (sess *Session) countRefusal(r Reason) {
	switch r {
	case ReasonReplay:
		sess.replays.Add(1)
	case ReasonTooOld:
		sess.tooOld.Add(1)
	}
}
