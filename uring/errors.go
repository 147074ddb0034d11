package uring

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zerohop/zerohop/internal/sysinfo"
	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by errors that mean this kernel lacks a
// feature (see Probe and the Have* functions).
var ErrNotSupported = errors.New("not supported by this kernel")

// ErrClosed is returned by operations on a closed Ring or BufferRing.
var ErrClosed = errors.New("io_uring: ring closed")

// ErrWrongThread means a SingleIssuer ring was used from another thread
// than the one that created it; the kernel refuses that (EEXIST). Close
// returns it, keeping the ring intact, when it cannot cancel from the
// calling thread.
var ErrWrongThread = errors.New("not on the ring's own thread")

// ErrInFlight means operations still use memory that the call would free:
// Close gave up waiting for cancelled operations, or BufferRing.Close
// found receives still picking from its group. Nothing was freed.
var ErrInFlight = errors.New("operations still in flight")

const (
	enobufs   = unix.ENOBUFS
	ecanceled = unix.ECANCELED
	etime     = unix.ETIME
)

// errnoErr converts a positive errno to an error without allocating
// (unix.Errno is pointer-free and small values are not boxed on the heap).
func errnoErr(e int32) error { return unix.Errno(e) }

// SetupError is returned by New when io_uring_setup or mapping the rings
// fails. Err is the errno; Hint names the likely cause and its fix.
type SetupError struct {
	Entries uint32
	Flags   uint32
	Err     error
	Hint    string
}

func (e *SetupError) Error() string {
	s := fmt.Sprintf("io_uring_setup(entries=%d, flags=%s): %v", e.Entries, setupFlagNames(e.Flags), e.Err)
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

func (e *SetupError) Unwrap() error { return e.Err }

var setupFlagList = []struct {
	bit  uint32
	name string
}{
	{setupIOPoll, "IOPOLL"}, {setupSQPoll, "SQPOLL"}, {setupSQAff, "SQ_AFF"},
	{setupCQSize, "CQSIZE"}, {setupClamp, "CLAMP"}, {setupSubmitAll, "SUBMIT_ALL"},
	{setupCoopTaskrun, "COOP_TASKRUN"}, {setupTaskrunFlag, "TASKRUN_FLAG"},
	{setupSingleIssuer, "SINGLE_ISSUER"}, {setupDeferTaskrun, "DEFER_TASKRUN"},
	{setupNoMmap, "NO_MMAP"}, {setupNoSQArray, "NO_SQARRAY"},
}

func setupFlagNames(flags uint32) string {
	if flags == 0 {
		return "0"
	}
	var names []string
	for _, f := range setupFlagList {
		if flags&f.bit != 0 {
			names = append(names, f.name)
			flags &^= f.bit
		}
	}
	if flags != 0 {
		names = append(names, fmt.Sprintf("%#x", flags))
	}
	return strings.Join(names, "|")
}

// setupHint explains a failed io_uring_setup the way an operator needs it:
// what probably refused it and how to fix that.
func setupHint(err error, flags uint32) string {
	switch {
	case errors.Is(err, unix.ENOSYS):
		return "io_uring is unavailable: the kernel was built without CONFIG_IO_URING, or a seccomp filter answers ENOSYS (container runtimes' default profiles do; allow io_uring_setup, io_uring_enter and io_uring_register)"
	case errors.Is(err, unix.EPERM):
		if v, rerr := sysinfo.IoUringDisabled(); rerr == nil && v == 2 {
			return "io_uring is disabled system-wide (kernel.io_uring_disabled=2); fix: sysctl -w kernel.io_uring_disabled=0"
		} else if rerr == nil && v == 1 {
			return "io_uring is restricted (kernel.io_uring_disabled=1) to CAP_SYS_ADMIN and members of kernel.io_uring_group; fix: sysctl -w kernel.io_uring_disabled=0, or run in that group"
		}
		if mode, rerr := sysinfo.SeccompMode(); rerr == nil && mode != 0 {
			return "a seccomp filter refuses io_uring (container runtimes' default profiles do); run with a profile that allows io_uring_setup, io_uring_enter and io_uring_register"
		}
		if flags&setupSQPoll != 0 {
			return "SQPOLL was refused; kernels before 5.11 need CAP_SYS_ADMIN for it"
		}
		return "permission denied (check kernel.io_uring_disabled, seccomp and LSM policy)"
	case errors.Is(err, unix.ENOMEM):
		hint := "not enough lockable memory for the rings: raise RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK= in systemd) or use fewer entries"
		if soft, _, rerr := sysinfo.MemlockLimit(); rerr == nil && soft != sysinfo.Unlimited {
			hint += fmt.Sprintf(" (RLIMIT_MEMLOCK is %d bytes)", soft)
		}
		return hint
	case errors.Is(err, unix.EINVAL):
		return "the kernel rejected the entries or a flag: entries must be 1..32768; SINGLE_ISSUER needs Linux 6.0, DEFER_TASKRUN 6.1 (with SINGLE_ISSUER, not with SQPOLL), COOP_TASKRUN 5.19, NO_SQARRAY 6.6"
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		return "out of file descriptors (RLIMIT_NOFILE)"
	}
	return ""
}

// enterError names the failed io_uring_enter.
func enterError(errno unix.Errno) error {
	switch errno {
	case unix.EBUSY, unix.EAGAIN:
		return fmt.Errorf("io_uring_enter: %w: completion queue overflowing; reap completions before submitting more", errno)
	case unix.EEXIST:
		return fmt.Errorf("io_uring_enter: %w (%w): a SINGLE_ISSUER ring entered from another thread than the one that created it (lock the OS thread)", ErrWrongThread, errno)
	}
	return fmt.Errorf("io_uring_enter: %w", errno)
}
