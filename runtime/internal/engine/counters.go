package engine

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/netstack"
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
	// DropPacket: a frame on the AF_XDP path whose Ethernet/IP/UDP headers
	// do not parse (truncated, impossible lengths, IPv6 extension headers).
	DropPacket
	// DropChecksum: a bad IPv4 header or UDP checksum on the AF_XDP path.
	DropChecksum
	// DropFragment: an IP fragment reached an AF_XDP socket (the steering
	// program passes fragments to the kernel, which reassembles them).
	DropFragment
	// DropTxFull: a reply was built but no transmit slot was free; the
	// caller's retransmission recovers it.
	DropTxFull
	// DropDuplicate: a retransmission of a request a blocking handler is
	// still working on; its reply is on the way.
	DropDuplicate
	// DropNoFrame: a reply had to be built in a fresh AF_XDP frame and none
	// was free.
	DropNoFrame
	// DropSendFailed: the kernel refused to send a reply (the errno is
	// logged with the first one).
	DropSendFailed
	// DropSealed: a sealed frame the server's sealer refused to open
	// (forged, replayed, altered, cut short, for an unknown session or
	// from another address than its session's peer; the sealer counts
	// which), or a reply it could not seal (its session ended meanwhile).
	// Never answered.
	DropSealed
	// NumDropReasons bounds DropReason values.
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{
	DropShort: "short", DropMagic: "magic", DropVersion: "version", DropReply: "reply",
	DropTruncated: "truncated", DropPacket: "packet", DropChecksum: "checksum", DropFragment: "fragment",
	DropTxFull: "tx_full", DropDuplicate: "duplicate", DropNoFrame: "no_frame", DropSendFailed: "send_failed",
	DropSealed: "sealed",
}

var dropReasonHelp = [NumDropReasons]string{
	DropShort:      "datagrams shorter than a GWIR header",
	DropMagic:      "datagrams that are not GWIR (wrong magic)",
	DropVersion:    "GWIR frames of a version this server does not speak",
	DropReply:      "RESPONSE or PONG frames sent to the server, or broken ones",
	DropTruncated:  "datagrams larger than the receive buffer that could not be answered TOO_LARGE",
	DropPacket:     "AF_XDP frames whose Ethernet/IP/UDP headers do not parse",
	DropChecksum:   "AF_XDP frames with a bad IP or UDP checksum",
	DropFragment:   "IP fragments that reached an AF_XDP socket",
	DropTxFull:     "replies dropped because no transmit slot was free (the caller retransmits)",
	DropDuplicate:  "retransmissions of a request a blocking handler still works on",
	DropNoFrame:    "replies dropped because no AF_XDP frame was free",
	DropSendFailed: "replies the kernel refused to send",
	DropSealed:     "sealed frames that did not open (forged, replayed, altered, unknown session, spoofed source) or replies that could not be sealed",
}

func (d DropReason) String() string {
	if d >= 0 && d < NumDropReasons {
		return dropReasonNames[d]
	}
	return "unknown"
}

// Help describes the reason in a sentence, for logs and metric help.
func (d DropReason) Help() string {
	if d >= 0 && d < NumDropReasons {
		return dropReasonHelp[d]
	}
	return "unknown"
}

// DropForParse maps a proto parse error of the drop class onto a reason.
func DropForParse(err proto.Error) DropReason {
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

// DropForPacket maps a netstack parse error onto a reason.
func DropForPacket(err error) DropReason {
	switch err {
	case netstack.ErrChecksum, netstack.ErrZeroChecksum:
		return DropChecksum
	case netstack.ErrFragment:
		return DropFragment
	}
	return DropPacket
}

// Path names the data path that received a request.
type Path uint8

const (
	// PathXSK: an AF_XDP socket.
	PathXSK Path = iota
	// PathUDP: a kernel UDP socket driven by io_uring.
	PathUDP
	// PathTCP: a kernel TCP connection driven by io_uring.
	PathTCP
	// NumPaths bounds Path values.
	NumPaths
)

var pathNames = [NumPaths]string{PathXSK: "xsk", PathUDP: "udp", PathTCP: "tcp"}

func (p Path) String() string {
	if p < NumPaths {
		return pathNames[p]
	}
	return "unknown"
}

// LoopCounters are written by one loop (and by the workers running its
// blocking requests) and read by snapshots.
type LoopCounters struct {
	RX, TX                  atomic.Uint64
	Pings, Oneway           atomic.Uint64
	BadFrame, UnknownMethod atomic.Uint64
	Panics, Overloaded      atomic.Uint64
	TooLarge, Blocking      atomic.Uint64
	Expired                 atomic.Uint64 // answered DEADLINE_EXCEEDED without running the handler
	Kicks, Rearms           atomic.Uint64
	PartialChecksum         atomic.Uint64 // AF_XDP datagrams accepted with a CHECKSUM_PARTIAL pattern
	// Sealed counts sealed requests opened; Unsealed unsealed requests a
	// permissive sealer let through; UnsealedDenied those a strict one
	// answered DENIED.
	Sealed, Unsealed, UnsealedDenied atomic.Uint64
	// Served counts requests by the path that received them; their sum
	// is the loop's requests (one counter per request, not two).
	Served    [NumPaths]atomic.Uint64
	Dropped   [NumPaths][NumDropReasons]atomic.Uint64
	CQEErrors [NumCQEClasses]atomic.Uint64
	Latency   Histogram
}

// CQEClass groups the operations whose failures a loop counts rather
// than treats as fatal.
type CQEClass int

const (
	// CQEWake: the READ on the loop's eventfd.
	CQEWake CQEClass = iota
	// CQEKick: an AF_XDP TX kick.
	CQEKick
	// CQEPoll: a POLL_ADD on an AF_XDP socket.
	CQEPoll
	// CQERecv: a receive on a kernel socket (other than running out of
	// buffers, which Rearms counts).
	CQERecv
	// CQEAccept: a TCP accept.
	CQEAccept
	// NumCQEClasses bounds CQEClass values.
	NumCQEClasses
)

var cqeClassNames = [NumCQEClasses]string{CQEWake: "wake", CQEKick: "kick", CQEPoll: "poll", CQERecv: "recv", CQEAccept: "accept"}

func (c CQEClass) String() string {
	if c >= 0 && c < NumCQEClasses {
		return cqeClassNames[c]
	}
	return "unknown"
}

// Warnings logs the first occurrence of each kind of trouble at WARN and
// then at most once per warnEvery, so a flood of bad input cannot flood
// the log while no drop goes unmentioned. Safe for concurrent use.
type Warnings struct {
	logger *slog.Logger
	lastNs [int(NumDropReasons) + int(NumCQEClasses)]atomic.Int64
}

// warnEvery bounds how often one reason is logged.
const warnEvery = 10 * time.Second

// NewWarnings logs to logger.
func NewWarnings(logger *slog.Logger) *Warnings { return &Warnings{logger: logger} }

// due reports whether slot may be logged now, claiming the slot if so.
func (w *Warnings) due(slot int) bool {
	if w == nil || w.logger == nil {
		return false
	}
	now := time.Now().UnixNano()
	last := w.lastNs[slot].Load()
	if last != 0 && now-last < int64(warnEvery) {
		return false
	}
	return w.lastNs[slot].CompareAndSwap(last, now)
}

// Drop counts a drop on path on c and logs it when due.
func (w *Warnings) Drop(c *LoopCounters, path Path, reason DropReason, queue int) {
	n := c.Dropped[path][reason].Add(1)
	if w.due(int(reason)) {
		w.logger.Warn("zerohop dropped a datagram (first of its kind, then at most every 10 s)",
			"reason", reason.String(), "what", reason.Help(), "path", path.String(), "queue", queue, "count_on_loop", n)
	}
}

// CQEError counts a failed operation of class on c and logs it when due.
func (w *Warnings) CQEError(c *LoopCounters, class CQEClass, queue int, err error) {
	n := c.CQEErrors[class].Add(1)
	if w.due(int(NumDropReasons) + int(class)) {
		w.logger.Warn("zerohop loop operation failed (first of its kind, then at most every 10 s)",
			"op", class.String(), "queue", queue, "err", err, "count_on_loop", n)
	}
}

// LoopSnapshot is a copy of one loop's counters.
type LoopSnapshot struct {
	RX, TX, Requests, Pings, Oneway, BadFrame, UnknownMethod uint64
	Panics, Overloaded, TooLarge, Blocking, Expired          uint64
	Kicks, Rearms, PartialChecksum                           uint64
	Sealed, Unsealed, UnsealedDenied                         uint64
	Served                                                   [NumPaths]uint64
	Dropped                                                  [NumPaths][NumDropReasons]uint64
	CQEErrors                                                [NumCQEClasses]uint64
	Latency                                                  HistogramSnapshot
}

// Snapshot copies the counters.
func (c *LoopCounters) Snapshot() LoopSnapshot {
	s := LoopSnapshot{
		RX: c.RX.Load(), TX: c.TX.Load(),
		Pings: c.Pings.Load(), Oneway: c.Oneway.Load(),
		BadFrame: c.BadFrame.Load(), UnknownMethod: c.UnknownMethod.Load(),
		Panics: c.Panics.Load(), Overloaded: c.Overloaded.Load(),
		TooLarge: c.TooLarge.Load(), Blocking: c.Blocking.Load(), Expired: c.Expired.Load(),
		Kicks: c.Kicks.Load(), Rearms: c.Rearms.Load(), PartialChecksum: c.PartialChecksum.Load(),
		Sealed: c.Sealed.Load(), Unsealed: c.Unsealed.Load(), UnsealedDenied: c.UnsealedDenied.Load(),
		Latency: c.Latency.Snapshot(),
	}
	for i := range c.Served {
		s.Served[i] = c.Served[i].Load()
		s.Requests += s.Served[i]
	}
	for p := range c.Dropped {
		for r := range c.Dropped[p] {
			s.Dropped[p][r] = c.Dropped[p][r].Load()
		}
	}
	for i := range c.CQEErrors {
		s.CQEErrors[i] = c.CQEErrors[i].Load()
	}
	return s
}
