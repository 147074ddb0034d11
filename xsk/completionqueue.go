package xsk

import (
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
	q.startConsumer()
	return q, nil
}

// get reads the address in a slot that peek returned.
func (q *completionQueue) get(index uint32) uint64 {
	return q.addrs[index&q.mask]
}
