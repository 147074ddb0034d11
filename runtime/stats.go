package runtime

import (
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime/internal/engine"
)

// LoopStats are one event loop's counters since Start.
type LoopStats struct {
	// Queue is the first RX queue (XSK) or the socket index (uring) the loop
	// serves, Queues all the RX queues whose sockets it owns, Core the CPU
	// it is pinned to.
	Queue  int
	Queues []int
	Core   int
	// RX counts datagrams (and TCP reads) received, TX replies handed to
	// the kernel.
	RX, TX uint64
	// Requests counts REQUEST frames dispatched (including oneway ones),
	// Pings PINGs answered, Oneway the oneway requests.
	Requests, Pings, Oneway uint64
	// Served counts requests by the path that received them ("xsk",
	// "udp", "tcp").
	Served map[string]uint64
	// BadFrame counts requests answered BAD_FRAME, UnknownMethod those
	// answered UNKNOWN_METHOD, Panics handler panics (answered INTERNAL),
	// Overloaded requests refused OVERLOADED (worker pool full or server
	// draining), TooLarge replies replaced by TOO_LARGE, Blocking requests
	// handed to the worker pool, Expired requests answered
	// DEADLINE_EXCEEDED without running their handler.
	BadFrame, UnknownMethod, Panics, Overloaded, TooLarge, Blocking, Expired uint64
	// Kicks counts TX wakeups of the kernel, FillRingEmpty the times an
	// XSK fill ring ran dry (the kernel dropped packets), Rearms the times
	// a multishot receive had to be re-armed after buffers ran out,
	// PartialChecksum the AF_XDP datagrams accepted with only the
	// pseudo-header sum in their checksum (a local peer's TX offload).
	Kicks, FillRingEmpty, Rearms, PartialChecksum uint64
	// Sealed counts sealed requests opened (WithSealer), Unsealed the
	// unsealed requests a permissive sealer let through, UnsealedDenied
	// those a strict one answered DENIED. Sealed frames that did not open
	// are Dropped["sealed"]; the sealer keeps why.
	Sealed, Unsealed, UnsealedDenied uint64
	// Dropped counts datagrams dropped without a reply, by reason, and
	// DroppedByPath the same by path ("xsk", "udp", "tcp") and reason.
	Dropped       map[string]uint64
	DroppedByPath map[string]map[string]uint64
	// OpErrors counts failed loop operations by kind ("wake", "kick",
	// "poll", "recv", "accept"): each is logged at WARN the first time.
	OpErrors map[string]uint64
	// Latency is the handler latency (receive to reply built).
	Latency Histogram
}

// MethodStats are one method's counters since it was registered.
type MethodStats struct {
	Method   string
	Blocking bool
	// Requests counts requests that reached the method (whatever their
	// answer).
	Requests uint64
	// Statuses counts the answers by status (oneway requests included:
	// the status their handler set); statuses from 31 up are counted
	// together under 31.
	Statuses map[proto.Status]uint64
	// Latency is receive to reply built.
	Latency Histogram
}

// QueueStats are the counters of one RX queue served through an AF_XDP
// socket (a loop may own several queues' sockets).
type QueueStats struct {
	// Queue is the RX queue, Core the CPU its loop is pinned to, IRQ the
	// queue's own interrupt (-1: none, as on veth).
	Queue, Core, IRQ int
	// RX counts frames taken from the socket's RX ring, TX replies posted
	// to its TX ring, FillRingEmpty the times the kernel found its fill
	// ring dry (and dropped a packet).
	RX, TX, FillRingEmpty uint64
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Backend Backend
	Loops   []LoopStats
	// Queues holds the AF_XDP queues' own counters, by queue (empty on
	// the uring backend). What arrives on other queues is served by the
	// kernel sockets, counted in LoopStats.Served["udp"].
	Queues []QueueStats
	// Total sums the loops (Queue and Core are -1).
	Total LoopStats
	// Methods holds each registered method's counters, sorted by name.
	Methods []MethodStats
	// Abandoned counts blocking requests still queued when Shutdown's
	// grace ran out: they never ran (their callers retry elsewhere).
	Abandoned uint64
}

// DroppedTotal sums Dropped over all reasons.
func (s *LoopStats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

func newLoopStats(queue int, queues []int, core int) LoopStats {
	byPath := map[string]map[string]uint64{}
	for p := engine.Path(0); p < engine.NumPaths; p++ {
		byPath[p.String()] = map[string]uint64{}
	}
	return LoopStats{Queue: queue, Queues: queues, Core: core, Served: map[string]uint64{},
		Dropped: map[string]uint64{}, DroppedByPath: byPath, OpErrors: map[string]uint64{}}
}

func (t *LoopStats) addSnapshot(s *engine.LoopSnapshot) {
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
	t.Expired += s.Expired
	t.Kicks += s.Kicks
	t.Rearms += s.Rearms
	t.PartialChecksum += s.PartialChecksum
	t.Sealed += s.Sealed
	t.Unsealed += s.Unsealed
	t.UnsealedDenied += s.UnsealedDenied
	for p := engine.Path(0); p < engine.NumPaths; p++ {
		t.Served[p.String()] += s.Served[p]
	}
	for p := engine.Path(0); p < engine.NumPaths; p++ {
		for r := engine.DropReason(0); r < engine.NumDropReasons; r++ {
			t.Dropped[r.String()] += s.Dropped[p][r]
			t.DroppedByPath[p.String()][r.String()] += s.Dropped[p][r]
		}
	}
	for c := engine.CQEClass(0); c < engine.NumCQEClasses; c++ {
		t.OpErrors[c.String()] += s.CQEErrors[c]
	}
	t.Latency.s.Merge(&s.Latency)
}

// Histogram is a snapshot of a latency histogram: log-linear buckets, any
// value reported within 12.5 % of itself.
type Histogram struct{ s engine.HistogramSnapshot }

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.s.Count() }

// Sum is the sum of the recorded values.
func (h *Histogram) Sum() time.Duration { return h.s.Sum() }

// Quantile returns the value below which the fraction q (0..1) of the
// recorded values fall, to within 12.5 %; zero when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration { return h.s.Quantile(q) }

// CountBelow returns how many recorded values are below d (never more
// than the truth; exact at the histogram's bucket boundaries, which are
// 12.5 % apart).
func (h *Histogram) CountBelow(d time.Duration) uint64 { return h.s.CountBelow(d) }

// Merge adds o's values to h.
func (h *Histogram) Merge(o *Histogram) { h.s.Merge(&o.s) }

func methodStats(m *engine.Method) MethodStats {
	s := m.Snapshot()
	out := MethodStats{Method: s.Name, Blocking: s.Blocking, Requests: s.Requests,
		Statuses: map[proto.Status]uint64{}, Latency: Histogram{s.Latency}}
	for i, n := range s.Statuses {
		if n != 0 {
			out.Statuses[proto.Status(i)] = n
		}
	}
	return out
}
