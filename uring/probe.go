package uring

import (
	"errors"
	"fmt"
	"sync"
)

// ProbeResult is what this kernel's io_uring offers, probed once per
// process: the opcode table (IORING_REGISTER_PROBE), the feature bits, and
// setup flags found by creating a throwaway ring with each.
type ProbeResult struct {
	// LastOp is the highest opcode the kernel knows.
	LastOp Op
	// Features are the IORING_FEAT_* bits.
	Features uint32
	// Setup flags accepted by io_uring_setup on their own (DeferTaskrun
	// together with SingleIssuer, which it requires).
	SingleIssuer, DeferTaskrun, CoopTaskrun, SQPoll, NoSQArray bool
	// BufferRing: IORING_REGISTER_PBUF_RING works; BufferRingMmap: with
	// kernel-allocated memory too.
	BufferRing, BufferRingMmap bool

	ops [256]bool
}

// Supports reports whether the kernel knows op.
func (p *ProbeResult) Supports(op Op) bool { return p.ops[op] }

var probeOnce = sync.OnceValues(probe)

// Probe returns the probed capabilities of this kernel. The probe runs once;
// later calls return the cached result. An error means io_uring itself is
// unusable here (see SetupError for why).
func Probe() (*ProbeResult, error) { return probeOnce() }

func probe() (*ProbeResult, error) {
	r, err := New(8)
	if err != nil {
		return nil, fmt.Errorf("io_uring probe: %w", err)
	}
	defer r.Close()
	p := &ProbeResult{Features: r.features}
	if err := r.probeOps(p); err != nil {
		return nil, fmt.Errorf("io_uring probe: %w", err)
	}
	p.NoSQArray = r.setupFlags&setupNoSQArray != 0
	p.SingleIssuer = trySetup(WithSingleIssuer())
	p.DeferTaskrun = trySetup(WithDeferTaskrun())
	p.CoopTaskrun = trySetup(WithCoopTaskrun())
	p.SQPoll = trySetup(WithSQPoll(0, -1))
	if br, err := r.NewBufferRing(0, 1, 64); err == nil {
		p.BufferRing = true
		br.Close()
	}
	if br, err := r.NewBufferRing(1, 1, 64, WithKernelMappedRing()); err == nil {
		p.BufferRingMmap = true
		br.Close()
	}
	return p, nil
}

func trySetup(opt Option) bool {
	r, err := New(2, opt)
	if err != nil {
		return false
	}
	r.Close()
	return true
}

// have turns a probed fact into a Have* answer.
func have(ok bool, what, minKernel string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("%s (Linux %s): %w", what, minKernel, ErrNotSupported)
}

// haveProbe runs fn on the probe result, passing probe errors through.
func haveProbe(fn func(p *ProbeResult) error) error {
	p, err := Probe()
	if err != nil {
		return err
	}
	return fn(p)
}

// The Have* functions answer whether this kernel offers a feature. Only nil
// and an error wrapping ErrNotSupported are conclusive; any other error
// means the probe could not run (io_uring disabled or refused, see
// SetupError) and says nothing about the feature.

// HaveOp reports whether the kernel knows op; the error names the first
// kernel that did.
func HaveOp(op Op) error {
	return haveProbe(func(p *ProbeResult) error {
		mk := opMinKernel[op]
		if mk == "" {
			mk = "?"
		}
		return have(p.Supports(op), "io_uring opcode "+op.String(), mk)
	})
}

// HaveSingleIssuer: IORING_SETUP_SINGLE_ISSUER, Linux 6.0.
func HaveSingleIssuer() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.SingleIssuer, "IORING_SETUP_SINGLE_ISSUER", "6.0") })
}

// HaveDeferTaskrun: IORING_SETUP_DEFER_TASKRUN, Linux 6.1.
func HaveDeferTaskrun() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.DeferTaskrun, "IORING_SETUP_DEFER_TASKRUN", "6.1") })
}

// HaveCoopTaskrun: IORING_SETUP_COOP_TASKRUN, Linux 5.19.
func HaveCoopTaskrun() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.CoopTaskrun, "IORING_SETUP_COOP_TASKRUN", "5.19") })
}

// HaveSQPoll: IORING_SETUP_SQPOLL for this process, Linux 5.11 without
// privileges (5.1 as root).
func HaveSQPoll() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.SQPoll, "IORING_SETUP_SQPOLL", "5.11") })
}

// HaveNoSQArray: IORING_SETUP_NO_SQARRAY, Linux 6.6.
func HaveNoSQArray() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.NoSQArray, "IORING_SETUP_NO_SQARRAY", "6.6") })
}

// HaveExtArg: timed waits (IORING_FEAT_EXT_ARG), Linux 5.11.
func HaveExtArg() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.Features&FeatExtArg != 0, "IORING_FEAT_EXT_ARG", "5.11") })
}

// HaveCQESkip: SQECQESkipSuccess (IORING_FEAT_CQE_SKIP), Linux 5.17.
func HaveCQESkip() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.Features&FeatCQESkip != 0, "IORING_FEAT_CQE_SKIP", "5.17") })
}

// HaveBufferRing: provided-buffer rings (IORING_REGISTER_PBUF_RING), Linux
// 5.19.
func HaveBufferRing() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.BufferRing, "IORING_REGISTER_PBUF_RING", "5.19") })
}

// HaveBufferRingMmap: kernel-allocated buffer rings (IOU_PBUF_RING_MMAP),
// Linux 6.4.
func HaveBufferRingMmap() error {
	return haveProbe(func(p *ProbeResult) error { return have(p.BufferRingMmap, "IOU_PBUF_RING_MMAP", "6.4") })
}

// HaveMultishotAccept: IORING_ACCEPT_MULTISHOT, Linux 5.19. Inferred from
// provided-buffer rings, which landed in the same release.
func HaveMultishotAccept() error {
	return haveProbe(func(p *ProbeResult) error {
		return have(p.BufferRing && p.Supports(OpAccept), "IORING_ACCEPT_MULTISHOT", "5.19")
	})
}

// HaveMultishotRecv: IORING_RECV_MULTISHOT for RECV and RECVMSG, Linux 6.0.
// Inferred from the SEND_ZC opcode, which landed in the same release.
func HaveMultishotRecv() error {
	return haveProbe(func(p *ProbeResult) error {
		return have(p.Supports(OpSendZC) && p.BufferRing, "IORING_RECV_MULTISHOT", "6.0")
	})
}

// HaveSendZC: the SEND_ZC opcode, Linux 6.0.
func HaveSendZC() error { return HaveOp(OpSendZC) }

// HaveMsgRing: the MSG_RING opcode, Linux 5.18.
func HaveMsgRing() error { return HaveOp(OpMsgRing) }

// IsNotSupported reports whether err says a feature is missing.
func IsNotSupported(err error) bool { return errors.Is(err, ErrNotSupported) }
