package runtime

import (
	"sync/atomic"

	"github.com/zerohop/zerohop/proto"
)

// DropReason says why a received datagram got no reply.
type DropReason int

const (
	// DropShort: fewer than 24 bytes.
	DropShort DropReason = iota
	// DropMagic: not a GWIR frame.
	DropMagic
	// DropVersion: a GWIR version this server does not speak.
	DropVersion
	// DropReply: a RESPONSE or PONG sent to the server.
	DropReply
	// DropTruncated: larger than the receive buffer and not a request that
	// could be answered TOO_LARGE.
	DropTruncated
	// DropPacket: the XSK backend got a frame that is not a valid UDP
	// datagram for the service (bad checksum, fragment, truncated headers).
	DropPacket
	// DropTxFull: a reply was built but no transmit slot was free; the
	// caller's retransmission recovers it.
	DropTxFull
	// DropDuplicate: a retransmission of a request a blocking handler is
	// still working on; its reply is on the way.
	DropDuplicate
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropShort: "short", DropMagic: "magic", DropVersion: "version", DropReply: "reply",
	DropTruncated: "truncated", DropPacket: "packet", DropTxFull: "tx_full", DropDuplicate: "duplicate",
}

func (d DropReason) String() string {
	if d >= 0 && d < numDropReasons {
		return dropReasonNames[d]
	}
	return "unknown"
}

// loopCounters are written by one loop (and its workers' completions, which
// the loop itself reaps) and read by Stats.
type loopCounters struct {
	rx, tx                  atomic.Uint64
	requests, pings, oneway atomic.Uint64
	badFrame, unknownMethod atomic.Uint64
	panics, overloaded      atomic.Uint64
	tooLarge, blocking      atomic.Uint64
	kicks, rearms           atomic.Uint64
	dropped                 [numDropReasons]atomic.Uint64
	latency                 histogram
}

// LoopStats are one event loop's counters since Start.
type LoopStats struct {
	// Queue is the RX queue (XSK) or socket index (uring) the loop serves;
	// Core the CPU it is pinned to.
	Queue, Core int
	// RX counts datagrams received, TX replies handed to the kernel.
	RX, TX uint64
	// Requests counts REQUEST frames dispatched to a handler (including
	// oneway ones), Pings PINGs answered, Oneway the oneway requests.
	Requests, Pings, Oneway uint64
	// BadFrame counts requests answered BAD_FRAME, UnknownMethod those
	// answered UNKNOWN_METHOD, Panics handler panics (answered INTERNAL),
	// Overloaded requests refused OVERLOADED (worker pool full or server
	// draining), TooLarge replies replaced by TOO_LARGE, Blocking requests
	// handed to the worker pool.
	BadFrame, UnknownMethod, Panics, Overloaded, TooLarge, Blocking uint64
	// Kicks counts TX wakeups of the kernel, FillRingEmpty the times the
	// XSK fill ring ran dry (packets were dropped by the kernel), Rearms the
	// times a multishot receive had to be re-armed after buffers ran out.
	Kicks, FillRingEmpty, Rearms uint64
	// Dropped counts datagrams dropped without a reply, by reason.
	Dropped map[string]uint64
	// Latency is the handler latency (receive to reply built).
	Latency Histogram
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Backend Backend
	Loops   []LoopStats
	// Total sums the loops (Queue and Core are -1).
	Total LoopStats
}

func (c *loopCounters) snapshot(queue, core int) LoopStats {
	s := LoopStats{
		Queue: queue, Core: core,
		RX: c.rx.Load(), TX: c.tx.Load(),
		Requests: c.requests.Load(), Pings: c.pings.Load(), Oneway: c.oneway.Load(),
		BadFrame: c.badFrame.Load(), UnknownMethod: c.unknownMethod.Load(),
		Panics: c.panics.Load(), Overloaded: c.overloaded.Load(),
		TooLarge: c.tooLarge.Load(), Blocking: c.blocking.Load(),
		Kicks: c.kicks.Load(), Rearms: c.rearms.Load(),
		Dropped: map[string]uint64{},
		Latency: c.latency.snapshot(),
	}
	for r := DropReason(0); r < numDropReasons; r++ {
		s.Dropped[r.String()] = c.dropped[r].Load()
	}
	return s
}

func (t *LoopStats) add(s *LoopStats) {
	t.RX += s.RX
	t.TX += s.TX
	t.Requests += s.Requests
	t.Pings += s.Pings
	t.Oneway += s.Oneway
	t.BadFrame += s.BadFrame
	t.UnknownMethod += s.UnknownMethod
	t.Panics += s.Panics
	t.Overloaded += s.Overloaded
	t.TooLarge += s.TooLarge
	t.Blocking += s.Blocking
	t.Kicks += s.Kicks
	t.FillRingEmpty += s.FillRingEmpty
	t.Rearms += s.Rearms
	for k, v := range s.Dropped {
		t.Dropped[k] += v
	}
	t.Latency.merge(&s.Latency)
}

// DroppedTotal sums Dropped over all reasons.
func (s *LoopStats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// dropFor maps a proto parse error of the drop class onto a DropReason.
func dropFor(err proto.Error) DropReason {
	switch err {
	case proto.ErrShort:
		return DropShort
	case proto.ErrMagic:
		return DropMagic
	case proto.ErrVersion:
		return DropVersion
	}
	return DropReply
}
