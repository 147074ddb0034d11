package xsk

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// completionQueue is the completion ring: the kernel returns the addresses
// of frames whose transmission finished, so we may reuse them.
//
//   - producer: only the kernel writes this; we acquire it in readyEntries.
//   - consumer: only we write this (release store in release).
//   - flags: only the kernel writes this.
type completionQueue struct {
	ring
	addrs []uint64 // written by the kernel before it publishes producer
}

func mapCompletionQueue(fd int, off unix.XDPRingOffset, entries uint32) (completionQueue, error) {
	r, err := mapRing(fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off, entries, addrSize)
	if err != nil {
		return completionQueue{}, err
	}
	q := completionQueue{ring: r, addrs: addrSlice(r.mapping, off, entries)}
	q.cachedConsumer = atomic.LoadUint32(q.consumer)
	q.cachedProducer = atomic.LoadUint32(q.producer)
	return q, nil
}

// peek takes up to n ready entries and returns the first index and count.
func (q *completionQueue) peek(n uint32) (index, count uint32) {
	count = q.readyEntries(n)
	index = q.cachedConsumer
	q.cachedConsumer += count
	return index, count
}

// get reads the address in a slot that peek returned.
func (q *completionQueue) get(index uint32) uint64 {
	return q.addrs[index&q.mask]
}

// release hands every peeked slot back to the kernel with a release store.
func (q *completionQueue) release() {
	atomic.StoreUint32(q.consumer, q.cachedConsumer)
}
