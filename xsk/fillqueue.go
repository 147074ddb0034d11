package xsk

import (
	"golang.org/x/sys/unix"
)

// fillQueue is the fill ring: we hand empty UMEM frames (their addresses)
// to the kernel, which writes received packets into them.
//
//   - producer: only we write this (release store in submit).
//   - consumer: only the kernel writes this; we acquire it in freeSlots.
//   - flags: only the kernel writes this.
type fillQueue struct {
	ring
	addrs []uint64 // written by us, read by the kernel after submit
}

func mapFillQueue(fd int, off unix.XDPRingOffset, entries uint32) (fillQueue, error) {
	r, err := mapRing(fd, unix.XDP_UMEM_PGOFF_FILL_RING, off, entries, addrSize)
	if err != nil {
		return fillQueue{}, err
	}
	q := fillQueue{ring: r, addrs: addrSlice(r.mapping, off, entries)}
	q.startProducer()
	return q, nil
}

// set writes the frame address for a slot that reserve returned.
func (q *fillQueue) set(index uint32, addr uint64) {
	q.addrs[index&q.mask] = addr
}
