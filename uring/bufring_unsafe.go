package uring

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

var _ [16]byte = [unsafe.Sizeof(bufEntry{})]byte{}

func (br *BufferRing) setup(count int) error {
	var err error
	br.slab, err = unix.Mmap(-1, 0, count*br.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		br.slab = nil
		return err
	}
	ringSize := count * int(unsafe.Sizeof(bufEntry{}))
	reg := bufReg{ringEntries: uint32(count), bgid: br.group}
	if br.kernelMapped {
		reg.flags = pbufRingMmap
	} else {
		br.ringMem, err = unix.Mmap(-1, 0, ringSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			br.ringMem = nil
			return err
		}
		reg.ringAddr = uint64(uintptr(unsafe.Pointer(&br.ringMem[0])))
	}
	if _, err := br.ring.register(registerPbufRing, unsafe.Pointer(&reg), 1); err != nil {
		return err
	}
	if br.kernelMapped {
		off := int64(offPbufRing) | int64(br.group)<<offPbufShift
		br.ringMem, err = unix.Mmap(br.ring.fd, off, ringSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			br.ringMem = nil
			br.unregister()
			return err
		}
	}
	br.entries = unsafe.Slice((*bufEntry)(unsafe.Pointer(&br.ringMem[0])), count)
	br.tailWord = (*atomic.Uint32)(unsafe.Pointer(&br.ringMem[12]))
	return nil
}

func (br *BufferRing) bufferAddr(id uint16) uint64 {
	return uint64(uintptr(unsafe.Pointer(&br.slab[int(id)*br.size])))
}

func (br *BufferRing) unregister() error {
	if br.ring.fd < 0 {
		return nil // closing the ring unregistered it
	}
	reg := bufReg{bgid: br.group}
	_, err := br.ring.register(unregisterPbufRing, unsafe.Pointer(&reg), 1)
	return err
}

// release unmaps the ring and the buffers; the group must be unregistered
// or the ring closed (the kernel pins user-memory rings, so unmapping
// never lets it write into reused memory).
func (br *BufferRing) release() {
	if br.closed {
		return
	}
	br.closed = true
	if br.ringMem != nil {
		unix.Munmap(br.ringMem)
		br.ringMem = nil
	}
	if br.slab != nil {
		if br.ring != nil && br.ring.keepBuffers {
			for i := range br.slab {
				br.slab[i] = PoisonByte
			}
		} else {
			unix.Munmap(br.slab)
		}
		br.slab = nil
	}
	br.entries = nil
	br.tailWord = nil
}
