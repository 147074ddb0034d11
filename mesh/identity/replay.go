package identity

import "sync/atomic"

// The replay window follows RFC 6479 ("IPsec Anti-Replay Algorithm
// without Bit Shifting"): a ring of replayBlocks 64-bit blocks, one bit per
// packet number, where moving the window forward clears whole blocks
// instead of shifting bits. One block is always the partly filled newest,
// so the window reaches back (replayBlocks−1)×64 = 8,128 packet numbers
// behind the highest one opened, in 1 KiB per session, the size WireGuard
// chose (8,192 bits, its COUNTER_BITS_TOTAL). Several loops seal frames of
// one session under one packet-number space, so a sender preempted between
// sealing and sending reorders its frames behind everything the others
// sealed meanwhile; the window must cover that. A frame older than it is
// refused as too old (an honest sender's retransmission is a new packet
// with a new number).
const (
	replayBlocks = 128
	// ReplayWindow is how many packet numbers behind the highest one
	// opened a frame may be and still be accepted (once).
	ReplayWindow = (replayBlocks - 1) * 64
)

// replayWindow is updated under its session's receive lock. Its words are
// atomics so that check, the lock-free early test run before a frame is
// opened, may read them while another loop updates the window.
type replayWindow struct {
	top    atomic.Uint64 // highest packet number accepted
	any    atomic.Bool   // whether one was accepted at all
	blocks [replayBlocks]atomic.Uint64
}

// check reports why pn would be refused now (0 if it would not). A frame
// it passes may still be refused by update; a frame it refuses would be.
func (w *replayWindow) check(pn uint64) Reason {
	if !w.any.Load() {
		return 0
	}
	top := w.top.Load()
	if pn > top {
		return 0
	}
	if top-pn >= ReplayWindow {
		return ReasonTooOld
	}
	if w.blocks[(pn/64)%replayBlocks].Load()&(1<<(pn%64)) != 0 {
		return ReasonReplay
	}
	return 0
}

// update records pn as opened, or reports why it must be refused. Call
// with the receive lock held.
func (w *replayWindow) update(pn uint64) Reason {
	if !w.any.Load() {
		w.any.Store(true)
		w.top.Store(pn)
		w.blocks[(pn/64)%replayBlocks].Store(1 << (pn % 64))
		return 0
	}
	top := w.top.Load()
	if pn > top {
		cur, next := top/64, pn/64
		n := next - cur
		if n > replayBlocks {
			n = replayBlocks
		}
		for i := uint64(1); i <= n; i++ {
			w.blocks[(cur+i)%replayBlocks].Store(0)
		}
		w.top.Store(pn)
	} else if top-pn >= ReplayWindow {
		return ReasonTooOld
	}
	b := &w.blocks[(pn/64)%replayBlocks]
	bit := uint64(1) << (pn % 64)
	old := b.Load()
	if old&bit != 0 {
		return ReasonReplay
	}
	b.Store(old | bit)
	return 0
}
