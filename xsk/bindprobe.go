package xsk

import (
	"errors"
	"fmt"
)

// Sizes of the throwaway UMEM and rings ProbeBind binds with: as small as
// the kernel accepts comfortably, so the probe locks little memory.
const (
	probeFrames   = 64
	probeRingSize = 64
)

// ProbeBind tells how an AF_XDP socket binds to queue of the interface
// ifindex (in the calling thread's network namespace): it opens a small
// UMEM and a socket through Open's own path (zero-copy first, copy mode
// when the driver refuses zero-copy with EOPNOTSUPP) and closes them again.
// When zero-copy bound, it binds once more with CopyOnly so that copy mode
// is checked as well.
//
// zeroCopy reports whether a zero-copy bind succeeded. err is nil when a
// copy-mode bind succeeded; otherwise it is the failing bind's error (EBUSY
// after Open's retries: another socket holds the queue; EINVAL: no such
// queue; ENODEV: no such interface). zeroCopy false with a nil error means
// the device binds in copy mode only.
func ProbeBind(ifindex, queue int) (zeroCopy bool, err error) {
	u, err := NewUMEM(UMEMConfig{FrameCount: probeFrames})
	if err != nil {
		return false, fmt.Errorf("xsk: probe bind: %w", err)
	}
	defer func() { err = errors.Join(err, u.Close()) }()
	cfg := SocketConfig{RXSize: probeRingSize, TXSize: probeRingSize, FillSize: probeRingSize, CompletionSize: probeRingSize}
	bind := func(cfg SocketConfig) (zeroCopy bool, err error) {
		s, err := u.Open(ifindex, queue, cfg)
		if err != nil {
			return false, fmt.Errorf("xsk: probe bind: %w", err)
		}
		zeroCopy = s.ZeroCopy()
		return zeroCopy, s.Close()
	}
	if zeroCopy, err = bind(cfg); err != nil || !zeroCopy {
		return false, err
	}
	cfg.CopyOnly = true
	_, err = bind(cfg)
	return true, err
}
