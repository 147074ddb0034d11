package uring

import (
	"time"

	"golang.org/x/sys/unix"
)

// The Prep* methods reserve an SQE (submitting queued ones first when the SQ
// is full, see GetSQE), fill it for one operation and return it so the
// caller can add flags (SQEIOLink, SQECQESkipSuccess, SQEFixedFile, ...).
// Nothing reaches the kernel before the next Submit or SubmitAndWait.
//
// userData comes back in the operation's CQE(s); make it an index into a
// table of the caller's, never a pointer.
//
// Memory passed to a Prep* method (buffers, msghdrs, sockaddrs) must stay
// untouched until the operation's final CQE (the first without CQEFMore):
// the kernel reads or writes it while the operation runs. The ring keeps it
// reachable until that CQE is reaped, matching it by the SQE's UserData as
// it was when submitted; with SQECQESkipSuccess, which posts no CQE on
// success, until Close (see the package doc).

func (r *Ring) prep(op Op, fd int, addr uint64, length uint32, off uint64, userData uint64) (*SQE, error) {
	sqe, err := r.GetSQE()
	if err != nil {
		return nil, err
	}
	sqe.Opcode = op
	sqe.Fd = int32(fd)
	sqe.Addr = addr
	sqe.Len = length
	sqe.Off = off
	sqe.UserData = userData
	return sqe, nil
}

// PrepNop prepares a no-op that completes with Res 0.
func (r *Ring) PrepNop(userData uint64) (*SQE, error) {
	return r.prep(OpNop, -1, 0, 0, 0, userData)
}

// PrepPollAdd waits until fd reports any of events (unix.POLLIN, ...); the
// CQE's Res holds the ready events. A multishot poll stays armed and posts a
// CQE (with CQEFMore) per wakeup until removed or until a CQE without
// CQEFMore ends it (Linux 5.13).
func (r *Ring) PrepPollAdd(fd int, events uint32, multishot bool, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpPollAdd, fd, 0, 0, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = events
	if multishot {
		sqe.Len = pollAddMulti
	}
	return sqe, nil
}

// PrepPollRemove removes the poll whose user data is target; the poll
// completes with -ECANCELED and this request with 0 (or -ENOENT).
func (r *Ring) PrepPollRemove(target uint64, userData uint64) (*SQE, error) {
	return r.prep(OpPollRemove, -1, target, 0, 0, userData)
}

// PrepRecvMultishot receives from a socket into buffers picked from the
// provided-buffer group, one CQE per receive (with CQEFBuffer and the
// buffer id), staying armed while CQEs carry CQEFMore (Linux 6.0). When the
// group runs dry the request ends with a NoBuffers CQE: recycle buffers and
// prepare it again.
func (r *Ring) PrepRecvMultishot(fd int, group uint16, msgFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.PrepRecvSelect(fd, group, msgFlags, userData)
	if err != nil {
		return nil, err
	}
	sqe.Ioprio |= recvMultishot
	return sqe, nil
}

// PrepRecvSelect receives once from a socket into a buffer picked from the
// provided-buffer group.
func (r *Ring) PrepRecvSelect(fd int, group uint16, msgFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpRecv, fd, 0, 0, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = msgFlags
	sqe.Flags = SQEBufferSelect
	sqe.BufIndex = group
	return sqe, nil
}

// PrepAccept accepts one connection; Res is the new descriptor, which the
// caller owns. flags are accept4 flags (unix.SOCK_CLOEXEC, ...).
func (r *Ring) PrepAccept(fd int, flags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpAccept, fd, 0, 0, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = flags
	return sqe, nil
}

// PrepAcceptMultishot accepts connections until cancelled, one CQE (with
// CQEFMore) per connection (Linux 5.19).
func (r *Ring) PrepAcceptMultishot(fd int, flags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.PrepAccept(fd, flags, userData)
	if err != nil {
		return nil, err
	}
	sqe.Ioprio |= acceptMultishot
	return sqe, nil
}

// PrepTimeout completes after d with -ETIME, or with 0 once count other
// completions happened first (count 0: only the time counts). With
// TimeoutAbs in flags, d is an absolute CLOCK_MONOTONIC time since boot.
// The timespec is kept inside the ring, so this does not allocate.
func (r *Ring) PrepTimeout(d time.Duration, count uint32, flags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpTimeout, -1, 0, 1, uint64(count), userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = flags
	r.setTimespec(sqe, d)
	return sqe, nil
}

// PrepLinkTimeout bounds the SQE prepared just before it, which must carry
// SQEIOLink: if that operation is not done after d it is cancelled
// (-ECANCELED) and this completes with -ETIME; otherwise this completes with
// -ECANCELED.
func (r *Ring) PrepLinkTimeout(d time.Duration, flags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpLinkTimeout, -1, 0, 1, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = flags
	r.setTimespec(sqe, d)
	return sqe, nil
}

// PrepTimeoutRemove cancels the timeout whose user data is target; it
// completes with -ECANCELED, this request with 0 (or -ENOENT, -EALREADY).
func (r *Ring) PrepTimeoutRemove(target uint64, userData uint64) (*SQE, error) {
	return r.prep(OpTimeoutRemove, -1, target, 0, 0, userData)
}

// PrepCancel cancels the request whose user data is target (flags: CancelAll
// for every match); it completes with -ECANCELED (or its result if it was
// already running), this request with 0, -ENOENT or -EALREADY.
func (r *Ring) PrepCancel(target uint64, flags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpAsyncCancel, -1, target, 0, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = flags
	return sqe, nil
}

// PrepCancelFd cancels requests on fd (flags: CancelAll for all of them);
// Res is the number cancelled with CancelAll.
func (r *Ring) PrepCancelFd(fd int, flags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpAsyncCancel, fd, 0, 0, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = flags | CancelFd
	return sqe, nil
}

// PrepMsgRing posts a CQE with Res res and user data targetUserData to the
// ring whose descriptor is targetFd — the way to wake another loop (Linux
// 5.18). flags may hold MsgRingFlagsPass, then cqeFlags become the posted
// CQE's flags. This request completes with 0 on our ring.
func (r *Ring) PrepMsgRing(targetFd int, res int32, targetUserData uint64, flags uint32, cqeFlags uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpMsgRing, targetFd, msgRingData, uint32(res), targetUserData, userData)
	if err != nil {
		return nil, err
	}
	sqe.OpFlags = flags
	sqe.FileIndex = cqeFlags
	return sqe, nil
}

// PrepClose closes fd.
func (r *Ring) PrepClose(fd int, userData uint64) (*SQE, error) {
	return r.prep(OpClose, fd, 0, 0, 0, userData)
}

// PrepCloseFixed empties fixed-file slot index.
func (r *Ring) PrepCloseFixed(index uint32, userData uint64) (*SQE, error) {
	sqe, err := r.prep(OpClose, 0, 0, 0, 0, userData)
	if err != nil {
		return nil, err
	}
	sqe.FileIndex = index + 1
	return sqe, nil
}

// setTimespec stores d in the ring's timespec slot of sqe and points the
// SQE at it.
func (r *Ring) setTimespec(sqe *SQE, d time.Duration) {
	slot := r.lastSlot()
	r.timespecs[slot] = unix.NsecToTimespec(int64(d))
	sqe.Addr = r.timespecAddr(slot)
}

// lastSlot returns the SQ slot of the SQE GetSQE handed out last.
func (r *Ring) lastSlot() uint32 { return (r.sq.tail - 1) & r.sq.mask }
