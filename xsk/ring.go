package xsk

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ring is the part every AF_XDP ring has in common: a mapping shared with
// the kernel holding a producer index, a consumer index, a flags word and
// a power-of-two array of entries. Indices run freely and wrap at 2^32; an
// entry's slot is index & mask.
//
// Who writes which index depends on the ring's direction, so the typed
// rings in fillqueue.go, rxqueue.go, txqueue.go and completionqueue.go say
// it per field. The rules, after libxdp's xsk.h: the side that owns an
// index caches it and publishes it with a release store once per batch; the
// peer's index is read with an acquire load only when the cached copy says
// the batch cannot be satisfied.
type ring struct {
	producer *uint32
	consumer *uint32
	// flags: only the kernel writes this (XDP_RING_NEED_WAKEUP).
	flags *uint32
	mask  uint32
	size  uint32
	// cachedProducer and cachedConsumer are ours alone. On a producer ring
	// cachedConsumer is the peer's consumer plus size, so that
	// cachedConsumer-cachedProducer is the number of free slots.
	cachedProducer uint32
	cachedConsumer uint32
	mapping        []byte
}

// mapRing maps one ring of the socket fd at the given page offset.
func mapRing(fd int, pgoff int64, off unix.XDPRingOffset, entries uint32, entrySize uintptr) (ring, error) {
	length := int(off.Desc) + int(entries)*int(entrySize)
	mem, err := unix.Mmap(fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, fmt.Errorf("mmap ring at offset %#x (%d bytes): %w", pgoff, length, err)
	}
	mappings.Add(1)
	producer, consumer, flags := ringPointers(mem, off)
	return ring{
		producer: producer,
		consumer: consumer,
		flags:    flags,
		mask:     entries - 1,
		size:     entries,
		mapping:  mem,
	}, nil
}

func (r *ring) unmap() error {
	if r.mapping == nil {
		return nil
	}
	err := unix.Munmap(r.mapping)
	r.mapping = nil
	r.producer, r.consumer, r.flags = nil, nil, nil
	mappings.Add(-1)
	return err
}

// freeSlots is libxdp's xsk_prod_nb_free: how many entries a producer may
// reserve, refreshing the peer's consumer index only when the cache says
// fewer than want are free.
func (r *ring) freeSlots(want uint32) uint32 {
	free := r.cachedConsumer - r.cachedProducer
	if free >= want {
		return free
	}
	r.cachedConsumer = atomic.LoadUint32(r.consumer) + r.size // acquire the peer's index
	return r.cachedConsumer - r.cachedProducer
}

// readyEntries is libxdp's xsk_cons_nb_avail: how many entries a consumer
// may take (at most want), refreshing the peer's producer index only when
// the cache is empty.
func (r *ring) readyEntries(want uint32) uint32 {
	ready := r.cachedProducer - r.cachedConsumer
	if ready == 0 {
		r.cachedProducer = atomic.LoadUint32(r.producer) // acquire the peer's index
		ready = r.cachedProducer - r.cachedConsumer
	}
	return min(ready, want)
}

// startProducer loads the indices of a ring we produce into (fill, TX).
func (r *ring) startProducer() {
	r.cachedProducer = atomic.LoadUint32(r.producer)
	r.cachedConsumer = atomic.LoadUint32(r.consumer) + r.size
}

// startConsumer loads the indices of a ring we consume from (RX,
// completion).
func (r *ring) startConsumer() {
	r.cachedConsumer = atomic.LoadUint32(r.consumer)
	r.cachedProducer = atomic.LoadUint32(r.producer)
}

// reserve claims up to n slots of a producer ring and returns the first
// index and the count.
func (r *ring) reserve(n uint32) (index, count uint32) {
	count = min(r.freeSlots(n), n)
	index = r.cachedProducer
	r.cachedProducer += count
	return index, count
}

// submit publishes every reserved slot of a producer ring. The entries were
// written before this release store, so the kernel never sees a
// half-written batch.
func (r *ring) submit() {
	atomic.StoreUint32(r.producer, r.cachedProducer)
}

// peek takes up to n ready entries of a consumer ring and returns the
// first index and the count.
func (r *ring) peek(n uint32) (index, count uint32) {
	count = r.readyEntries(n)
	index = r.cachedConsumer
	r.cachedConsumer += count
	return index, count
}

// release hands every peeked slot of a consumer ring back to the kernel.
// The entries were read before this release store, so the kernel cannot
// overwrite them while we still read.
func (r *ring) release() {
	atomic.StoreUint32(r.consumer, r.cachedConsumer)
}

// needsWakeup reports whether the kernel asked to be woken for this ring.
func (r *ring) needsWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// mappings counts the ring and UMEM mappings this package holds, so tests
// can check that Close leaves none behind.
var mappings atomic.Int64

// readyEntriesFresh is how many entries a consumer ring holds that we have
// not taken, from a fresh read of the producer index; it leaves the cache
// alone.
func (r *ring) readyEntriesFresh() uint32 {
	return atomic.LoadUint32(r.producer) - r.cachedConsumer
}
