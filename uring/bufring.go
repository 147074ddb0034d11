package uring

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// BufferRing is a provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux
// 5.19): a group of equally sized buffers the kernel picks from for
// receives prepared with a buffer group (PrepRecvMultishot,
// PrepRecvmsgMultishot, PrepRecvSelect).
//
// Buffer ids run from 0 to Count()-1. A buffer starts out owned by the
// kernel; a CQE whose BufferID is id hands it to the caller, and Recycle (or
// Put then Publish) gives it back. A buffer's bytes stay valid until it is
// recycled or the ring is closed. When every buffer is out, receives fail
// with -ENOBUFS (CQE.NoBuffers) and multishot requests end: recycle and
// re-arm.
//
// Like its Ring, a BufferRing is not safe for concurrent use.
type BufferRing struct {
	ring    *Ring
	group   uint16
	mask    uint16
	size    int
	slab    []byte     // Count()*size bytes of buffers, mmap'd outside the Go heap
	ringMem []byte     // the io_uring_buf array shared with the kernel
	entries []bufEntry // view of ringMem
	// tailWord is the 32-bit word holding bufs[0].bid (low half) and the
	// ring tail (high half, overlaying bufs[0].resv). Only we write it;
	// storing it publishes the entries below the new tail (release).
	tailWord     *atomic.Uint32
	tail         uint16 // our tail: entries up to here are written
	published    uint16 // the tail the kernel sees
	slot0Bid     uint16 // bid last written into entries[0], repeated in tailWord
	kernelMapped bool
	closed       bool
}

// bufEntry is struct io_uring_buf. Its Resv field must never be written:
// in entry 0 it is the ring tail.
type bufEntry struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// BufferRingOption configures NewBufferRing.
type BufferRingOption func(*bufferRingConfig)

type bufferRingConfig struct{ kernelMapped bool }

// WithKernelMappedRing lets the kernel allocate the ring memory, which we
// then map (IOU_PBUF_RING_MMAP, Linux 6.4); the default is memory we map
// ourselves and register.
func WithKernelMappedRing() BufferRingOption {
	return func(c *bufferRingConfig) { c.kernelMapped = true }
}

// NewBufferRing allocates count buffers of size bytes (count a power of
// two, at most 32768), registers them as buffer group group and hands them
// all to the kernel. Close releases them; so does closing the Ring.
func (r *Ring) NewBufferRing(group uint16, count int, size int, opts ...BufferRingOption) (*BufferRing, error) {
	if r.fd < 0 {
		return nil, ErrClosed
	}
	if count <= 0 || count > 1<<15 || count&(count-1) != 0 {
		return nil, fmt.Errorf("io_uring buffer ring %d: count %d is not a power of two in 1..32768", group, count)
	}
	if size <= 0 || size > 1<<31-1 {
		return nil, fmt.Errorf("io_uring buffer ring %d: buffer size %d out of range", group, size)
	}
	var cfg bufferRingConfig
	for _, o := range opts {
		o(&cfg)
	}
	br := &BufferRing{ring: r, group: group, mask: uint16(count - 1), size: size, kernelMapped: cfg.kernelMapped}
	if err := br.setup(count); err != nil {
		br.release()
		return nil, fmt.Errorf("io_uring buffer ring %d (%d×%d bytes): %w", group, count, size, err)
	}
	for id := 0; id < count; id++ {
		br.Put(uint16(id))
	}
	br.Publish()
	r.bufferRings = append(r.bufferRings, br)
	return br, nil
}

// Group returns the buffer group id to use in SQEs.
func (br *BufferRing) Group() uint16 { return br.group }

// Count returns the number of buffers.
func (br *BufferRing) Count() int { return int(br.mask) + 1 }

// Size returns the size of each buffer.
func (br *BufferRing) Size() int { return br.size }

// Buffer returns buffer id, whole. Use the CQE's Res for the filled length.
// The bytes stay valid until the ring is closed; they are the caller's to
// read only between the CQE that delivered id and its recycling.
func (br *BufferRing) Buffer(id uint16) []byte {
	off := int(id) * br.size
	return br.slab[off : off+br.size : off+br.size]
}

// Put gives buffer id back to the kernel once Publish is called; batching
// Puts under one Publish saves atomic stores.
func (br *BufferRing) Put(id uint16) {
	slot := br.tail & br.mask
	e := &br.entries[slot]
	e.addr = br.bufferAddr(id)
	e.len = uint32(br.size)
	e.bid = id
	if slot == 0 {
		br.slot0Bid = id
	}
	br.tail++
}

// Publish makes every Put buffer visible to the kernel: one atomic store of
// the 16-bit tail, after the entries were written.
func (br *BufferRing) Publish() {
	if br.tail == br.published || br.closed {
		return
	}
	var w [4]byte
	binary.NativeEndian.PutUint16(w[0:], br.slot0Bid)
	binary.NativeEndian.PutUint16(w[2:], br.tail)
	br.tailWord.Store(binary.NativeEndian.Uint32(w[:]))
	br.published = br.tail
}

// Recycle is Put followed by Publish.
func (br *BufferRing) Recycle(id uint16) {
	br.Put(id)
	br.Publish()
}

// Close unregisters the group and frees the buffers. While a submitted
// request that picks from the group has not posted its last CQE (a
// multishot receive still armed), it returns an error wrapping ErrInFlight
// and frees nothing: cancel the request and reap its last CQE first, or
// close the Ring, which does both.
func (br *BufferRing) Close() error {
	if br.closed {
		return nil
	}
	if br.ring.fd >= 0 && br.ring.inflight.usesGroup(br.group) {
		return fmt.Errorf("io_uring close buffer ring %d: %w: a submitted receive still picks from this group", br.group, ErrInFlight)
	}
	err := br.unregister()
	br.release()
	r := br.ring
	for i, b := range r.bufferRings {
		if b == br {
			r.bufferRings = append(r.bufferRings[:i], r.bufferRings[i+1:]...)
			break
		}
	}
	if err != nil {
		return fmt.Errorf("io_uring unregister buffer ring %d: %w", br.group, err)
	}
	return nil
}
