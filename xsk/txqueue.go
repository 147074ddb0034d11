package xsk

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// txQueue is the TX ring: we post descriptors (frame address, length) of
// packets to send; the kernel consumes them and later returns the frames
// on the completion ring.
//
//   - producer: only we write this (release store in submit).
//   - consumer: only the kernel writes this; we acquire it in freeSlots.
//   - flags: only the kernel writes this.
type txQueue struct {
	ring
	descs []unix.XDPDesc // written by us, read by the kernel after submit
}

func mapTXQueue(fd int, off unix.XDPRingOffset, entries uint32) (txQueue, error) {
	r, err := mapRing(fd, unix.XDP_PGOFF_TX_RING, off, entries, descSize)
	if err != nil {
		return txQueue{}, err
	}
	q := txQueue{ring: r, descs: descSlice(r.mapping, off, entries)}
	q.startProducer()
	return q, nil
}

// set writes the descriptor for a slot that reserve returned.
func (q *txQueue) set(index uint32, addr uint64, length uint32) {
	d := &q.descs[index&q.mask]
	d.Addr, d.Len, d.Options = addr, length, 0
}

// unreserve gives back the last n reserved, not yet submitted slots.
func (q *txQueue) unreserve(n uint32) {
	q.cachedProducer -= n
}

// pending is how many submitted descriptors the kernel has not consumed
// yet, read fresh from the shared consumer index.
func (q *txQueue) pending() uint32 {
	return q.cachedProducer - atomic.LoadUint32(q.consumer)
}
