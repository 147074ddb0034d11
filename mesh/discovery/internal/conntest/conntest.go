package conntest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/runtime"
)

// Recorder records every state and error a resolver hands over. It is safe
// for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	states  []runtime.ResolverState
	errs    []error
	errAt   []time.Time
	changed chan struct{} // closed and replaced on every call
}

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{changed: make(chan struct{})} }

// UpdateState implements runtime.ResolverConn.
func (r *Recorder) UpdateState(s runtime.ResolverState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s)
	r.signal()
}

// ReportError implements runtime.ResolverConn.
func (r *Recorder) ReportError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
	r.errAt = append(r.errAt, time.Now())
	r.signal()
}

func (r *Recorder) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Snapshot is what a Recorder held at one moment.
type Snapshot struct {
	States []runtime.ResolverState
	Errors []error
	// ErrorTimes says when each error came.
	ErrorTimes []time.Time
}

// Last returns the last state handed over and whether there was one.
func (s Snapshot) Last() (runtime.ResolverState, bool) {
	if len(s.States) == 0 {
		return runtime.ResolverState{}, false
	}
	return s.States[len(s.States)-1], true
}

// LastAddrs returns the addresses of the last state, in order ("none" when
// no state came yet is distinguishable: nil against an empty slice).
func (s Snapshot) LastAddrs() []string {
	last, ok := s.Last()
	if !ok {
		return nil
	}
	addrs := make([]string, 0, len(last.Endpoints))
	for _, ep := range last.Endpoints {
		addrs = append(addrs, ep.Addr.String())
	}
	return addrs
}

// Snapshot copies what r holds now.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Snapshot{States: append([]runtime.ResolverState(nil), r.states...), Errors: append([]error(nil), r.errs...),
		ErrorTimes: append([]time.Time(nil), r.errAt...)}
}

// Wait blocks until cond holds for what r has recorded, or fails the test
// after timeout naming what it waited for and what it had. It returns how
// long the wait took.
func (r *Recorder) Wait(t testing.TB, timeout time.Duration, what string, cond func(Snapshot) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		snap := r.Snapshot()
		if cond(snap) {
			return time.Since(start)
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; last addrs %v, %d states, errors %v", timeout, what, snap.LastAddrs(), len(snap.States), snap.Errors)
		}
	}
}

// AddrsAre is a Wait condition: a state came, and its addresses are want
// in order (none: the last state is empty).
func AddrsAre(want ...string) func(Snapshot) bool {
	return func(s Snapshot) bool {
		got := s.LastAddrs()
		return got != nil && slices.Equal(got, want)
	}
}

// Build builds a resolver of service with b for a new Recorder and closes
// it in t.Cleanup (closing it earlier as well is fine).
func Build(t testing.TB, b runtime.ResolverBuilder, service string) (*Recorder, runtime.Resolver) {
	t.Helper()
	rec := New()
	r, err := b.Build(service, rec)
	if err != nil {
		t.Fatalf("build a resolver of %s: %v", service, err)
	}
	t.Cleanup(r.Close)
	return rec, r
}
