package engine

import (
	"context"
	"fmt"
	"runtime/pprof"
	"sync"
	"sync/atomic"

	"github.com/zerohop/zerohop/proto"
)

// ServeFunc runs one stage of a method (its admission chain or its
// handler chain). The runtime builds these once per method, at
// registration, from the application's handlers and middleware.
type ServeFunc func(req *Request, resp *Response)

// Method is one registered method. Its fields are set before it is
// published in a MethodTable and never change afterwards.
type Method struct {
	Name     string
	ID       uint32
	Blocking bool
	// Admit, when not nil, runs on the loop before the request is handed
	// to Serve (in place or on a worker). It admits the request by calling
	// Request.Admit; otherwise whatever it wrote into the Response is the
	// reply (an error status, a RETRY_AFTER).
	Admit ServeFunc
	// Release, when not nil, is told of every request Admit admitted whose
	// Serve then never ran (pool full, expired or abandoned in the queue,
	// a panic in Admit after admitting), so admission stages that hold
	// something per request (a shedder's in-flight slot) let it go.
	Release func(req *Request)
	// Serve is the handler with its middleware: on the loop, or on a worker
	// for a blocking method.
	Serve ServeFunc

	// Counters holds one MethodCounters per loop, so loops never share a
	// cache line; workers add to the slot of the loop that received the
	// request.
	Counters []MethodCounters

	panicLogged atomic.Bool
	labelCtx    atomic.Pointer[context.Context]
}

// labels is the pprof label set workers wear while running m, so CPU
// profiles split by method.
func (m *Method) labels() context.Context {
	if c := m.labelCtx.Load(); c != nil {
		return *c
	}
	c := pprof.WithLabels(context.Background(), pprof.Labels("zerohop_method", m.Name))
	m.labelCtx.Store(&c)
	return c
}

// StatusSlots bounds the per-status counters: statuses below
// StatusSlots-1 are counted one by one, the rest together in the last slot.
const StatusSlots = 32

// MethodCounters are one method's counters on one loop.
type MethodCounters struct {
	Requests atomic.Uint64
	Statuses [StatusSlots]atomic.Uint64
	Latency  Histogram
}

// StatusSlot is the index of status s in MethodCounters.Statuses.
func StatusSlot(s proto.Status) int { return int(min(s, StatusSlots-1)) }

// MethodTable maps method ids to methods. Lookups are one atomic load and
// a map read; registration copies the map (methods are few and registered
// rarely), so the loops never take a lock.
type MethodTable struct {
	mu    sync.Mutex
	cur   atomic.Pointer[map[uint32]*Method]
	loops int
}

// NewMethodTable returns an empty table whose methods count on loops loops.
func NewMethodTable(loops int) *MethodTable {
	t := &MethodTable{loops: loops}
	empty := map[uint32]*Method{}
	t.cur.Store(&empty)
	return t
}

// Lookup returns the method with id, or nil.
func (t *MethodTable) Lookup(id uint32) *Method { return (*t.cur.Load())[id] }

// Add publishes m, giving it its counters. It fails when the name or its
// id is taken.
func (t *MethodTable) Add(m *Method) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.cur.Load()
	if h, ok := old[m.ID]; ok {
		if h.Name == m.Name {
			return fmt.Errorf("method %q registered twice", m.Name)
		}
		return fmt.Errorf("methods %q and %q have the same id %#x", h.Name, m.Name, m.ID)
	}
	m.Counters = make([]MethodCounters, max(t.loops, 1))
	next := make(map[uint32]*Method, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[m.ID] = m
	t.cur.Store(&next)
	return nil
}

// All returns the registered methods, in no particular order.
func (t *MethodTable) All() []*Method {
	cur := *t.cur.Load()
	out := make([]*Method, 0, len(cur))
	for _, m := range cur {
		out = append(out, m)
	}
	return out
}

// MethodSnapshot is one method's counters summed over the loops.
type MethodSnapshot struct {
	Name     string
	Blocking bool
	Requests uint64
	Statuses [StatusSlots]uint64
	Latency  HistogramSnapshot
}

// Snapshot sums m's counters over the loops.
func (m *Method) Snapshot() MethodSnapshot {
	s := MethodSnapshot{Name: m.Name, Blocking: m.Blocking}
	for i := range m.Counters {
		c := &m.Counters[i]
		s.Requests += c.Requests.Load()
		for j := range c.Statuses {
			s.Statuses[j] += c.Statuses[j].Load()
		}
		h := c.Latency.Snapshot()
		s.Latency.Merge(&h)
	}
	return s
}
