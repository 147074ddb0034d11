package xsk

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds every use of unsafe in the package: the socket options
// that take structs, and turning mmap'd ring memory into typed pointers.

func setsockoptUMEMReg(fd int, reg *unix.XDPUmemReg) error {
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(reg)), unsafe.Sizeof(*reg), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func getsockoptMmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return off, errno
	}
	if size != uint32(unsafe.Sizeof(off)) {
		// Kernels before 5.4 return the layout without the flags word.
		return off, fmt.Errorf("XDP_MMAP_OFFSETS returned %d bytes, want %d (kernel older than 5.4): %w",
			size, unsafe.Sizeof(off), ErrNotSupported)
	}
	return off, nil
}

func getsockoptStatistics(fd int) (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	size := uint32(unsafe.Sizeof(st))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return st, errno
	}
	return st, nil
}

// ringPointers resolves the shared words of a mapped ring from the offsets
// the kernel reported.
func ringPointers(mem []byte, off unix.XDPRingOffset) (producer, consumer, flags *uint32) {
	return (*uint32)(unsafe.Pointer(&mem[off.Producer])),
		(*uint32)(unsafe.Pointer(&mem[off.Consumer])),
		(*uint32)(unsafe.Pointer(&mem[off.Flags]))
}

// addrSlice views the entries of a fill or completion ring.
func addrSlice(mem []byte, off unix.XDPRingOffset, entries uint32) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.Desc])), entries)
}

// descSlice views the entries of an RX or TX ring.
func descSlice(mem []byte, off unix.XDPRingOffset, entries uint32) []unix.XDPDesc {
	return unsafe.Slice((*unix.XDPDesc)(unsafe.Pointer(&mem[off.Desc])), entries)
}

const (
	addrSize = unsafe.Sizeof(uint64(0))
	descSize = unsafe.Sizeof(unix.XDPDesc{})
)

// sliceAddr is the address of the first byte of b, for XDP_UMEM_REG.
func sliceAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
