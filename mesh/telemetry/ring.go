package telemetry

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// record is what a loop handler keeps of one sampled request: fixed size,
// preallocated in a ring, copied out of the request (whose bytes die with
// the handler) and turned into a span later, off the loop.
type record struct {
	// seq is the slot's sequence number (see ring): written last by the
	// producer (publish) and by the consumer when it frees the slot.
	seq atomic.Uint64

	tc        proto.TraceContext
	hasParent bool
	panicked  bool
	oneway    bool
	path      runtime.Path
	attempt   uint8
	stateLen  uint8
	callerLen uint8
	status    proto.Status
	queue     int32
	method    string // the registered name: lives as long as the server
	peer      netip.AddrPort
	start     time.Time
	end       time.Time
	state     [255]byte
	caller    [255]byte
}

// ring is a bounded multi-producer, single-consumer queue of records in
// the style of Dmitry Vyukov's bounded MPMC queue: each slot's sequence
// number says whose turn it is, so producers (event loops, rarely more
// than one per ring) claim a slot with one CAS and never wait, and a full
// ring is detected without blocking (the record is dropped and counted).
//
// Slot i starts with seq = i. A producer owns the slot at position pos
// when seq == pos, publishes it with seq = pos+1; the consumer reads it
// when seq == pos+1 and frees it for the next lap with seq = pos+len.
type ring struct {
	_     [64]byte // keep enq off the cache line of whatever precedes
	enq   atomic.Uint64
	_     [56]byte
	deq   uint64 // only the consumer touches it
	mask  uint64
	slots []record
}

func newRing(size int) *ring {
	r := &ring{mask: uint64(size - 1), slots: make([]record, size)}
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
	}
	return r
}

// reserve claims a slot, or returns nil when the ring is full.
func (r *ring) reserve() (*record, uint64) {
	for {
		pos := r.enq.Load()
		s := &r.slots[pos&r.mask]
		seq := s.seq.Load()
		switch {
		case seq == pos:
			if r.enq.CompareAndSwap(pos, pos+1) {
				return s, pos
			}
		case seq < pos:
			return nil, 0 // the consumer has not freed it since the last lap
		}
		// Another producer took pos first: try the next position.
	}
}

// publish hands a reserved slot to the consumer.
func (r *ring) publish(s *record, pos uint64) { s.seq.Store(pos + 1) }

// drain calls fn for each published record in order, up to the first slot
// still being written, and frees them. Only one goroutine may drain.
func (r *ring) drain(fn func(*record)) int {
	n := 0
	for {
		s := &r.slots[r.deq&r.mask]
		if s.seq.Load() != r.deq+1 {
			return n
		}
		fn(s)
		s.seq.Store(r.deq + r.mask + 1)
		r.deq++
		n++
	}
}
