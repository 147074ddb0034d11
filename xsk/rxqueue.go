package xsk

import (
	"golang.org/x/sys/unix"
)

// rxQueue is the RX ring: the kernel posts descriptors of received packets
// (address inside a frame we gave on the fill ring, length).
//
//   - producer: only the kernel writes this; we acquire it in readyEntries.
//   - consumer: only we write this (release store in release).
//   - flags: only the kernel writes this.
type rxQueue struct {
	ring
	descs []unix.XDPDesc // written by the kernel before it publishes producer
}

func mapRXQueue(fd int, off unix.XDPRingOffset, entries uint32) (rxQueue, error) {
	r, err := mapRing(fd, unix.XDP_PGOFF_RX_RING, off, entries, descSize)
	if err != nil {
		return rxQueue{}, err
	}
	q := rxQueue{ring: r, descs: descSlice(r.mapping, off, entries)}
	q.startConsumer()
	return q, nil
}

// get reads the descriptor in a slot that peek returned.
func (q *rxQueue) get(index uint32) unix.XDPDesc {
	return q.descs[index&q.mask]
}

// ready reports whether the kernel has published entries we have not
// taken, reading the shared producer index fresh.
func (q *rxQueue) ready() bool { return q.readyEntriesFresh() != 0 }
