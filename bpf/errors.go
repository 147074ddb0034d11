package bpf

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Sentinel errors. Every error this package returns is an *Error wrapping
// one of these (test with errors.Is) or the kernel's errno.
var (
	// ErrNotFound: the service, rule or pin directory does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a service with the same port and address is registered.
	ErrExists = errors.New("already exists")
	// ErrFull: the map has no room for another entry.
	ErrFull = errors.New("map full")
	// ErrInvalid: an argument is out of range (queue index, prefix, port).
	ErrInvalid = errors.New("invalid argument")
	// ErrBusy: the interface already has an XDP program, or its pin
	// directory belongs to a program that is still loaded.
	ErrBusy = errors.New("interface busy")
	// ErrNotSupported: the kernel or the interface refused every XDP mode
	// that was allowed.
	ErrNotSupported = errors.New("not supported")
	// ErrClosed: the Program or Maps was closed.
	ErrClosed = errors.New("closed")
)

// Error describes a failed operation: which one, on which interface, and
// why. Err is one of the sentinels above wrapping the kernel's answer where
// there is one.
type Error struct {
	Op    string // e.g. "attach", "add service", "set socket"
	Iface string // may be empty
	Err   error
}

func (e *Error) Error() string {
	if e.Iface == "" {
		return "bpf: " + e.Op + ": " + e.Err.Error()
	}
	return "bpf: " + e.Op + " on " + e.Iface + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// mapError translates a map operation's error into a sentinel, keeping the
// original for the message and errors.Is on errnos.
func mapError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ebpf.ErrKeyNotExist), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, ebpf.ErrKeyExist):
		return fmt.Errorf("%w: %w", ErrExists, err)
	case errors.Is(err, unix.E2BIG), errors.Is(err, unix.ENOSPC), errors.Is(err, unix.ENOMEM):
		return fmt.Errorf("%w: %w", ErrFull, err)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EBADF):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
