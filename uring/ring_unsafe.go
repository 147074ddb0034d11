package uring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

// params is struct io_uring_params.
type params struct {
	sqEntries    uint32
	cqEntries    uint32
	flags        uint32
	sqThreadCPU  uint32
	sqThreadIdle uint32
	features     uint32
	wqFd         uint32
	resv         [3]uint32
	sqOff        sqRingOffsets
	cqOff        cqRingOffsets
}

type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// Layouts the kernel ABI fixes; a wrong size is a bug in this file.
var (
	_ [64]byte  = [unsafe.Sizeof(SQE{})]byte{}
	_ [16]byte  = [unsafe.Sizeof(CQE{})]byte{}
	_ [120]byte = [unsafe.Sizeof(params{})]byte{}
	_ [24]byte  = [unsafe.Sizeof(getEventsArg{})]byte{}
)

func setup(entries uint32, cfg *config, flags uint32) (*Ring, error) {
	p := params{
		flags:        flags,
		cqEntries:    cfg.cqEntries,
		sqThreadCPU:  cfg.sqThreadCPU,
		sqThreadIdle: cfg.sqThreadIdle,
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, &SetupError{Entries: entries, Flags: flags, Err: errno, Hint: setupHint(errno, flags)}
	}
	leak.Track(int(fd))
	r := &Ring{fd: int(fd), setupFlags: flags, features: p.features}
	if flags&setupSingleIssuer != 0 {
		r.ownerTid = unix.Gettid() // the kernel's submitter_task from now on
	}
	if err := r.mapRings(&p); err != nil {
		r.Close()
		return nil, &SetupError{Entries: entries, Flags: flags, Err: err, Hint: setupHint(err, flags)}
	}
	return r, nil
}

func (r *Ring) mmap(offset int64, length int) ([]byte, error) {
	b, err := unix.Mmap(r.fd, offset, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap io_uring region %#x (%d bytes): %w", offset, length, err)
	}
	r.mappings = append(r.mappings, b)
	return b, nil
}

func u32At(mem []byte, off uint32) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&mem[off]))
}

func (r *Ring) mapRings(p *params) error {
	sqSize := p.sqOff.array + p.sqEntries*4
	if p.flags&setupNoSQArray != 0 {
		sqSize = p.sqOff.flags + 4 // no array behind the header
	}
	cqSize := p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(CQE{}))
	var sqMem, cqMem []byte
	var err error
	if p.features&FeatSingleMmap != 0 {
		sqMem, err = r.mmap(offSQRing, int(max(sqSize, cqSize)))
		cqMem = sqMem
	} else {
		if sqMem, err = r.mmap(offSQRing, int(sqSize)); err == nil {
			cqMem, err = r.mmap(offCQRing, int(cqSize))
		}
	}
	if err != nil {
		return err
	}
	sqeMem, err := r.mmap(offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(SQE{})))
	if err != nil {
		return err
	}

	r.sq = submissionQueue{
		khead:    u32At(sqMem, p.sqOff.head),
		ktail:    u32At(sqMem, p.sqOff.tail),
		kflags:   u32At(sqMem, p.sqOff.flags),
		kdropped: u32At(sqMem, p.sqOff.dropped),
		sqes:     unsafe.Slice((*SQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries),
		mask:     *(*uint32)(unsafe.Pointer(&sqMem[p.sqOff.ringMask])),
		entries:  *(*uint32)(unsafe.Pointer(&sqMem[p.sqOff.ringEntries])),
	}
	if p.flags&setupNoSQArray == 0 {
		r.sq.array = unsafe.Slice((*uint32)(unsafe.Pointer(&sqMem[p.sqOff.array])), p.sqEntries)
		for i := range r.sq.array {
			r.sq.array[i] = uint32(i) // slot i always holds SQE i
		}
	}
	r.sq.head = r.sq.khead.Load()
	r.sq.tail = r.sq.ktail.Load()

	r.cq = completionQueue{
		khead:     u32At(cqMem, p.cqOff.head),
		ktail:     u32At(cqMem, p.cqOff.tail),
		koverflow: u32At(cqMem, p.cqOff.overflow),
		cqes:      unsafe.Slice((*CQE)(unsafe.Pointer(&cqMem[p.cqOff.cqes])), p.cqEntries),
		mask:      *(*uint32)(unsafe.Pointer(&cqMem[p.cqOff.ringMask])),
		entries:   *(*uint32)(unsafe.Pointer(&cqMem[p.cqOff.ringEntries])),
	}
	r.cq.head = r.cq.khead.Load()

	r.sq.published = r.sq.tail
	r.keep = make([]any, r.sq.entries)
	r.inflight = newInflight(r.sq.entries)
	r.timespecs = make([]unix.Timespec, r.sq.entries)
	r.backlog = make([]CQE, r.cq.entries) // a power of two, like the CQ
	r.waitArg.ts = uint64(uintptr(unsafe.Pointer(&r.waitTimeout)))
	return nil
}

func (r *Ring) enterSyscall(toSubmit, minComplete, flags uint32, ext bool) (int, unix.Errno) {
	var arg, argSize uintptr
	if ext {
		arg, argSize = uintptr(unsafe.Pointer(&r.waitArg)), unsafe.Sizeof(r.waitArg)
	}
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), arg, argSize)
	return int(n), errno
}

// register calls io_uring_register, restarting after signals.
func (r *Ring) register(op uint32, arg unsafe.Pointer, nrArgs uint32) (int, error) {
	if r.fd < 0 {
		return 0, ErrClosed
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uintptr(op), uintptr(arg), uintptr(nrArgs), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// syncCancelReg is struct io_uring_sync_cancel_reg.
type syncCancelReg struct {
	addr    uint64
	fd      int32
	flags   uint32
	timeout unix.Timespec
	opcode  uint8
	pad     [7]uint8
	pad2    [3]uint64
}

// cancelAll cancels every in-flight request and returns once none of them
// is still running (IORING_REGISTER_SYNC_CANCEL with ANY, Linux 6.0), or
// an error once deadline passed. ENOENT means nothing was in flight. On
// kernels without synchronous cancel (EINVAL) it submits an ASYNC_CANCEL
// of any request (5.19) and leaves the waiting to the caller's reaping.
func (r *Ring) cancelAll(deadline time.Time) error {
	left := max(time.Until(deadline), time.Millisecond)
	reg := syncCancelReg{fd: -1, flags: CancelAny, timeout: unix.NsecToTimespec(int64(left))}
	_, err := r.register(registerSyncCancel, unsafe.Pointer(&reg), 1)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("cancel in-flight operations: %w (%w)", ErrWrongThread, err)
	case errors.Is(err, unix.ETIME):
		return fmt.Errorf("cancel in-flight operations: %w: some were still running after %v (%w)", ErrInFlight, left, err)
	case errors.Is(err, unix.EINVAL):
		sqe, perr := r.GetSQE()
		if perr != nil {
			return perr
		}
		*sqe = SQE{Opcode: OpAsyncCancel, Fd: -1, OpFlags: CancelAny, UserData: ^uint64(0)}
		_, perr = r.Submit()
		return perr
	}
	return fmt.Errorf("cancel in-flight operations: %w", err)
}

// filesUpdate is struct io_uring_files_update.
type filesUpdate struct {
	offset uint32
	resv   uint32
	fds    uint64
}

// RegisterFiles registers fds as the ring's fixed-file table; -1 leaves a
// slot empty for UpdateFiles. SQEs then name a file by its index with
// SQEFixedFile, which saves the per-operation file lookup.
func (r *Ring) RegisterFiles(fds []int32) error {
	if len(fds) == 0 {
		return fmt.Errorf("io_uring register files: empty table")
	}
	if _, err := r.register(registerFiles, unsafe.Pointer(&fds[0]), uint32(len(fds))); err != nil {
		return fmt.Errorf("io_uring register %d files: %w", len(fds), err)
	}
	return nil
}

// UpdateFiles replaces fixed-file slots offset… with fds (-1 clears a slot)
// and returns how many slots it updated.
func (r *Ring) UpdateFiles(offset uint32, fds []int32) (int, error) {
	if len(fds) == 0 {
		return 0, nil
	}
	up := filesUpdate{offset: offset, fds: uint64(uintptr(unsafe.Pointer(&fds[0])))}
	n, err := r.register(registerFilesUpdate, unsafe.Pointer(&up), uint32(len(fds)))
	if err != nil {
		return n, fmt.Errorf("io_uring update files %d..%d: %w", offset, int(offset)+len(fds)-1, err)
	}
	return n, nil
}

// UnregisterFiles drops the fixed-file table.
func (r *Ring) UnregisterFiles() error {
	if _, err := r.register(unregisterFiles, nil, 0); err != nil {
		return fmt.Errorf("io_uring unregister files: %w", err)
	}
	return nil
}
