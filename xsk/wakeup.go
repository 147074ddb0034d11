package xsk

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// TXNeedsWakeup reports whether the kernel wants a kick (Kick, or a
// sendmsg on FD through io_uring) before it sends what is in the TX ring.
// In copy mode it is always true.
func (s *Socket) TXNeedsWakeup() bool { return !s.needWakeup || s.tx.needsWakeup() }

// FillNeedsWakeup reports whether the kernel wants a wakeup (WakeFill, or
// polling FD) before it takes frames from the fill ring again. Copy mode
// never asks.
func (s *Socket) FillNeedsWakeup() bool { return !s.needWakeup || s.fill.needsWakeup() }

// tryLater reports the errnos with which the kernel says "not now" to a
// wakeup: the TX ring is being drained by another context (EBUSY), copy
// mode sent its batch and more is left (EAGAIN), no skb or completion slot
// was free (ENOBUFS, EAGAIN), or the device is down (ENETDOWN).
func tryLater(errno unix.Errno) bool {
	switch errno {
	case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN, unix.EINTR:
		return true
	}
	return false
}

// Kick asks the kernel to send what is in the TX ring: sendto with
// MSG_DONTWAIT, skipped when the ring does not need a wakeup. "Try later"
// answers (EAGAIN, EBUSY, ENOBUFS, ENETDOWN) are counted in
// Counters.KickTryLater and return nil; the caller kicks again while
// TXPending is non-zero. Other errors are returned.
func (s *Socket) Kick() error {
	if !s.TXNeedsWakeup() {
		return nil
	}
	s.counters.Kicks++
	_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if errno == 0 {
		return nil
	}
	if tryLater(errno) {
		s.counters.KickTryLater++
		return nil
	}
	s.counters.KickErrors++
	return fmt.Errorf("xsk: kick TX of queue %d: sendto: %w", s.queue, errno)
}

// WakeFill tells the kernel that the fill ring has frames again: recvfrom
// with MSG_DONTWAIT, skipped when the fill ring does not need a wakeup.
// "Try later" answers are counted like Kick's and return nil.
func (s *Socket) WakeFill() error {
	if !s.FillNeedsWakeup() {
		return nil
	}
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if errno == 0 {
		return nil
	}
	if tryLater(errno) {
		s.counters.KickTryLater++
		return nil
	}
	return fmt.Errorf("xsk: wake fill ring of queue %d: recvfrom: %w", s.queue, errno)
}

// Poll waits up to timeout for events (unix.POLLIN: RX ring not empty;
// unix.POLLOUT: TX ring has room) on the socket and returns the events
// that are ready, 0 on timeout. Polling also performs the wakeups the
// rings asked for. For loops without io_uring; a negative timeout waits
// forever.
func (s *Socket) Poll(events int16, timeout time.Duration) (int16, error) {
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	fds := [1]unix.PollFd{{Fd: int32(s.fd), Events: events}}
	n, err := unix.Poll(fds[:], ms)
	if err == unix.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("xsk: poll queue %d: %w", s.queue, err)
	}
	if n == 0 {
		return 0, nil
	}
	return fds[0].Revents, nil
}
