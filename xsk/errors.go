package xsk

import "errors"

var (
	// ErrNotSupported means the kernel or the interface cannot do what was
	// asked (no AF_XDP in this kernel, an option the kernel does not know).
	ErrNotSupported = errors.New("xsk: not supported")
	// ErrClosed is returned by operations on a closed UMEM or Socket.
	ErrClosed = errors.New("xsk: closed")
	// ErrNoFrames means the UMEM has fewer unassigned frames than a new
	// socket asked for.
	ErrNoFrames = errors.New("xsk: not enough unassigned UMEM frames")
	// ErrQueueTaken means a socket of this UMEM is already bound to the
	// same interface queue.
	ErrQueueTaken = errors.New("xsk: queue already bound by this UMEM")
)
