package health

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// Builder builds health-checking balancers around an inner balancer
// (runtime.BalancerBuilder). It is safe for concurrent use.
type Builder struct {
	inner runtime.BalancerBuilder
	cfg   Config

	// For tests: the clock, and no goroutines (the test drives process
	// and onProbe itself).
	nowNs  func() int64
	manual bool

	mu        sync.Mutex
	balancers map[*balancer]struct{}
}

var _ runtime.BalancerBuilder = (*Builder)(nil)

// Wrap returns a builder of balancers that check the health of a
// service's endpoints and hand only the healthy ones to the balancers
// inner builds (see the package doc). Zero fields of cfg take their
// defaults; an error names the field that is wrong.
func Wrap(inner runtime.BalancerBuilder, cfg Config) (*Builder, error) {
	if inner == nil {
		return nil, errors.New("health: Wrap: nil inner balancer builder (mesh/balance.P2C() is the default)")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Builder{inner: inner, cfg: c, nowNs: monoNs, balancers: map[*balancer]struct{}{}}, nil
}

// Config returns the configuration in force, defaults filled in.
func (b *Builder) Config() Config { return b.cfg }

// Build implements runtime.BalancerBuilder.
func (b *Builder) Build(cc runtime.BalancerConn) runtime.Balancer {
	bal := &balancer{b: b, cfg: &b.cfg, cc: cc, wake: make(chan struct{}, 1), closing: make(chan struct{}),
		nextWindow: b.nowNs() + int64(b.cfg.SuccessRateWindow)}
	empty := map[*runtime.SubConn]*endpoint{}
	bal.eps.Store(&empty)
	bal.inner = b.inner.Build(&innerConn{bal: bal})
	b.mu.Lock()
	b.balancers[bal] = struct{}{}
	b.mu.Unlock()
	if !b.manual {
		bal.wg.Add(1)
		go bal.run()
	}
	return bal
}

// State is an endpoint's health as the checker sees it.
type State uint8

const (
	// Healthy: handed to the inner balancer.
	Healthy State = iota
	// Probation: an ejection ended; one trial call decides.
	Probation
	// Ejected by passive detection until its ejection ends.
	Ejected
	// Draining: its last PONG said draining.
	Draining
	// Unhealthy: its probes failed UnhealthyThreshold times in a row, or
	// discovery calls it unhealthy.
	Unhealthy
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "healthy"
	case Probation:
		return "probation"
	case Ejected:
		return "ejected"
	case Draining:
		return "draining"
	case Unhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// Ejection reasons.
const (
	ReasonConsecutive = "consecutive failures"
	ReasonUnreachable = "unreachable"
	ReasonSuccessRate = "success rate"
	ReasonProbation   = "failed probation"
)

// EndpointStats is what the checker knows of one endpoint.
type EndpointStats struct {
	Service string
	Addr    netip.AddrPort
	State   State
	// Ejections is how many times it was ejected; Multiplier the n of
	// its next ejection time (see the package doc).
	Ejections  uint64
	Multiplier int
	// CapRefused counts detections not acted on because of
	// MaxEjectedFraction.
	CapRefused uint64
	// Of the last ejection: why, when the failures that caused it began,
	// when it was ejected, and when it came back (zero while out).
	Reason       string
	FirstFailure time.Time
	EjectedAt    time.Time
	ReturnedAt   time.Time
	// Passive counters since the endpoint appeared.
	Successes, Failures uint64
	// Active probes.
	ProbesOK, ProbesFailed uint64
	LastProbeErr           error
}

// Stats returns every endpoint of every balancer the builder made, by
// service and address.
func (b *Builder) Stats() []EndpointStats {
	b.mu.Lock()
	bals := make([]*balancer, 0, len(b.balancers))
	for bal := range b.balancers {
		bals = append(bals, bal)
	}
	b.mu.Unlock()
	var out []EndpointStats
	for _, bal := range bals {
		out = append(out, bal.stats()...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Addr.Compare(out[j].Addr) < 0
	})
	return out
}

// Trial states of an endpoint on probation.
const (
	trialNone   int32 = iota
	trialOpen         // the next pick takes it
	trialTaken        // picked; waiting for a result
	trialPassed       // a result came, a success
	trialFailed       // a result came, a failure
)

// endpoint is one SubConn's health. The atomics are written by Done (the
// client loop) and picks; the rest belongs to the balancer's mu.
type endpoint struct {
	sc *runtime.SubConn

	consecutive atomic.Int32
	streakNs    atomic.Int64 // when the current run of failures began
	tripped     atomic.Int32 // 0, or the reason code of a detection waiting for the goroutine
	winOK       atomic.Uint32
	winFail     atomic.Uint32
	okTotal     atomic.Uint64
	failTotal   atomic.Uint64
	trial       atomic.Int32
	trialNs     atomic.Int64 // when the trial was taken

	// Under balancer.mu.
	ejected      bool
	probation    bool
	ejectedUntil int64
	multiplier   int
	healthySince int64
	ejections    uint64
	capRefused   uint64
	reason       string
	firstFailNs  int64
	ejectedAtNs  int64
	returnedAtNs int64
	probeHealthy bool
	draining     bool
	okStreak     int
	failStreak   int
	probesOK     uint64
	probesFailed uint64
	lastProbeErr error
	// listedUnhealthy is discovery's verdict in the last UpdateState:
	// read there, where the runtime has just set it, and nowhere else
	// (the runtime rewrites a SubConn's Endpoint on every update).
	listedUnhealthy bool
	// probeStop is closed to stop the prober running for the endpoint;
	// nil when none runs (discovery calls it unhealthy, it left, or the
	// builder is manual).
	probeStop chan struct{}
	suspect   chan struct{} // a failure asks the prober for a probe now
}

// Detection codes in endpoint.tripped.
const (
	tripConsecutive int32 = 1 + iota
	tripUnreachable
)

type balancer struct {
	b     *Builder
	cfg   *Config
	cc    runtime.BalancerConn
	inner runtime.Balancer
	eps   atomic.Pointer[map[*runtime.SubConn]*endpoint]
	wake  chan struct{}

	// mu guards the endpoints' health and serialises the calls of the
	// inner balancer's UpdateState, which are made holding it.
	mu         sync.Mutex
	all        []*runtime.SubConn // the last state, in the runtime's order
	panicking  bool
	nextWindow int64
	closed     bool

	// pickMu guards what the installed picker is made of; the inner
	// balancer's UpdatePicker takes it (from inside UpdateState, or later
	// from a goroutine of its own).
	pickMu    sync.Mutex
	lastInner runtime.Picker
	trials    []*endpoint

	closing chan struct{}
	wg      sync.WaitGroup
}

// innerConn is the inner balancer's BalancerConn: its pickers are wrapped
// with the trials of endpoints on probation.
type innerConn struct{ bal *balancer }

func (c *innerConn) Service() string { return c.bal.cc.Service() }

func (c *innerConn) UpdatePicker(p runtime.Picker) {
	bal := c.bal
	bal.pickMu.Lock()
	defer bal.pickMu.Unlock()
	bal.lastInner = p
	bal.installLocked()
}

// installLocked installs the last inner picker with the current trials;
// pickMu is held.
func (bal *balancer) installLocked() {
	if bal.lastInner != nil {
		bal.cc.UpdatePicker(&picker{inner: bal.lastInner, trials: bal.trials, nowNs: bal.b.nowNs})
	}
}

// picker hands out the trial calls of endpoints on probation, then asks
// the inner picker. Immutable.
type picker struct {
	inner  runtime.Picker
	trials []*endpoint
	nowNs  func() int64
}

// Pick implements runtime.Picker.
func (p *picker) Pick(info *runtime.PickInfo) (*runtime.SubConn, error) {
	for _, e := range p.trials {
		if e.sc != info.Failed && e.trial.CompareAndSwap(trialOpen, trialTaken) {
			e.trialNs.Store(p.nowNs())
			return e.sc, nil
		}
	}
	return p.inner.Pick(info)
}

// UpdateState implements runtime.Balancer: it keeps the health of the
// endpoints that stay, and probes those discovery does not call
// unhealthy: it starts a prober for an endpoint that is new or that
// discovery no longer calls unhealthy (the runtime keeps an endpoint's
// SubConn across updates, so one that turns serving is not new), and
// stops the prober of one that leaves or that discovery now calls
// unhealthy. It must not wait for a probe: the runtime holds its own
// lock, which a probe's Ping takes.
func (bal *balancer) UpdateState(state runtime.BalancerState) {
	bal.mu.Lock()
	defer bal.mu.Unlock()
	if bal.closed {
		return
	}
	old := *bal.eps.Load()
	next := make(map[*runtime.SubConn]*endpoint, len(state.SubConns))
	now := bal.b.nowNs()
	for _, sc := range state.SubConns {
		unhealthy := sc.Endpoint().Health == runtime.HealthUnhealthy
		e := old[sc]
		switch {
		case e == nil:
			e = &endpoint{sc: sc, probeHealthy: true, healthySince: now, suspect: make(chan struct{}, 1)}
		case e.listedUnhealthy && !unhealthy:
			// Back in discovery's eyes (restarted, re-registered): what
			// probes said before it was called unhealthy is stale, and it
			// starts healthy as a new endpoint does.
			e.probeHealthy, e.draining, e.okStreak, e.failStreak = true, false, 0, 0
		}
		e.listedUnhealthy = unhealthy
		bal.setProbingLocked(e, !unhealthy)
		next[sc] = e
	}
	for sc, e := range old {
		if next[sc] == nil {
			bal.setProbingLocked(e, false)
		}
	}
	bal.eps.Store(&next)
	bal.all = append(bal.all[:0:0], state.SubConns...)
	bal.publishLocked()
}

// setProbingLocked starts or stops e's prober; mu is held.
func (bal *balancer) setProbingLocked(e *endpoint, want bool) {
	want = want && !bal.b.manual && bal.cfg.Interval > 0
	switch {
	case want && e.probeStop == nil:
		e.probeStop = make(chan struct{})
		bal.wg.Add(1)
		go bal.probe(e, e.probeStop)
	case !want && e.probeStop != nil:
		close(e.probeStop)
		e.probeStop = nil
	}
}

// isFailure says whether an attempt counts against its endpoint, and
// whether it says the endpoint is unreachable (see the package doc).
func isFailure(r *runtime.AttemptResult) (failed, gone bool) {
	if !r.Answered {
		return true, r.Err != nil && unreachable(r.Err)
	}
	switch r.Status {
	case proto.StatusInternal, proto.StatusOverloaded, proto.StatusDeadlineExceeded:
		return true, false
	}
	return false, false
}

// unreachable says whether err is an ICMP unreachable: nothing serves
// the endpoint's port, or its host cannot be reached.
func unreachable(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// Done implements runtime.Balancer. It runs on the client loop: atomics
// only, and a signal that never blocks.
func (bal *balancer) Done(sc *runtime.SubConn, r *runtime.AttemptResult) {
	if e := (*bal.eps.Load())[sc]; e != nil {
		failed, gone := isFailure(r)
		if e.trial.Load() == trialTaken {
			if failed {
				e.trial.Store(trialFailed)
			} else {
				e.trial.Store(trialPassed)
			}
			bal.signal()
		}
		if failed {
			e.failTotal.Add(1)
			e.winFail.Add(1)
			n := e.consecutive.Add(1)
			if n == 1 {
				e.streakNs.Store(bal.b.nowNs())
			}
			// Probe now (the prober keeps 10 ms between such probes): a
			// timeout does not say whether the server is gone, a PING to
			// a port nobody serves is answered by an ICMP unreachable.
			select {
			case e.suspect <- struct{}{}:
			default:
			}
			switch {
			case gone:
				if e.tripped.CompareAndSwap(0, tripUnreachable) {
					bal.signal()
				}
			case bal.cfg.ConsecutiveFailures > 0 && int(n) >= bal.cfg.ConsecutiveFailures:
				if e.tripped.CompareAndSwap(0, tripConsecutive) {
					bal.signal()
				}
			}
		} else {
			e.okTotal.Add(1)
			e.winOK.Add(1)
			if e.consecutive.Load() != 0 {
				e.consecutive.Store(0)
			}
		}
	}
	bal.inner.Done(sc, r)
}

func (bal *balancer) signal() {
	select {
	case bal.wake <- struct{}{}:
	default:
	}
}

// Close implements runtime.Balancer: it stops the goroutines, waits for
// them, and closes the inner balancer.
func (bal *balancer) Close() {
	bal.mu.Lock()
	if bal.closed {
		bal.mu.Unlock()
		return
	}
	bal.closed = true
	bal.mu.Unlock()
	close(bal.closing)
	bal.wg.Wait()
	bal.inner.Close()
	bal.b.mu.Lock()
	delete(bal.b.balancers, bal)
	bal.b.mu.Unlock()
}

// run acts on detections, ends ejections and trials, and evaluates the
// success-rate windows.
func (bal *balancer) run() {
	defer bal.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		bal.mu.Lock()
		next := bal.processLocked()
		bal.mu.Unlock()
		t.Reset(time.Duration(max(next-bal.b.nowNs(), int64(time.Millisecond))))
		select {
		case <-bal.closing:
			return
		case <-bal.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
	}
}

// process is processLocked for tests.
func (bal *balancer) process() {
	bal.mu.Lock()
	defer bal.mu.Unlock()
	bal.processLocked()
}

// processLocked does what is due now, re-publishes when anything changed,
// and returns when it is next due.
func (bal *balancer) processLocked() (next int64) {
	if bal.closed {
		return bal.b.nowNs() + int64(time.Hour)
	}
	now := bal.b.nowNs()
	eps := *bal.eps.Load()
	changed := false
	// Detections from Done.
	for _, e := range eps {
		switch code := e.tripped.Swap(0); code {
		case tripUnreachable:
			changed = bal.eject(e, now, ReasonUnreachable, eps) || changed
		case tripConsecutive:
			changed = bal.eject(e, now, ReasonConsecutive, eps) || changed
		}
	}
	// Success rates over the window that ended.
	if bal.cfg.SuccessRateWindow > 0 && now >= bal.nextWindow {
		for _, e := range eps {
			ok, fail := e.winOK.Swap(0), e.winFail.Swap(0)
			total := ok + fail
			if !e.ejected && !e.probation && int(total) >= bal.cfg.SuccessRateMinRequests &&
				float64(ok) < bal.cfg.SuccessRateMin*float64(total) {
				if e.streakNs.Load() == 0 {
					e.streakNs.Store(bal.nextWindow - int64(bal.cfg.SuccessRateWindow))
				}
				changed = bal.eject(e, now, ReasonSuccessRate, eps) || changed
			}
		}
		bal.nextWindow = now + int64(bal.cfg.SuccessRateWindow)
	}
	next = now + int64(time.Hour)
	if bal.cfg.SuccessRateWindow > 0 {
		next = bal.nextWindow
	}
	for _, e := range eps {
		switch {
		case e.ejected && now >= e.ejectedUntil:
			e.ejected, e.probation = false, true
			e.trial.Store(trialOpen)
			changed = true
		case e.ejected:
			next = min(next, e.ejectedUntil)
		}
		if e.probation {
			switch e.trial.Load() {
			case trialPassed:
				e.probation = false
				e.trial.Store(trialNone)
				e.consecutive.Store(0)
				e.returnedAtNs, e.healthySince = now, now
				changed = true
				bal.cfg.Logger.Info("zerohop endpoint back", "service", bal.cc.Service(), "endpoint", e.sc.Addr().String(),
					"after", time.Duration(now-e.ejectedAtNs).Round(time.Millisecond))
			case trialFailed:
				e.trial.Store(trialNone)
				e.probation = false
				bal.ejectNow(e, now, ReasonProbation)
				next = min(next, e.ejectedUntil)
				changed = true
			case trialTaken:
				due := e.trialNs.Load() + int64(bal.cfg.ProbationTimeout)
				if now >= due {
					e.trial.CompareAndSwap(trialTaken, trialOpen)
				} else {
					next = min(next, due)
				}
			}
		}
		// Forgiveness: one ejection less per decayInterval in health.
		if !e.ejected && !e.probation && e.multiplier > 0 {
			if now-e.healthySince >= int64(decayInterval) {
				e.multiplier--
				e.healthySince = now
			}
			next = min(next, e.healthySince+int64(decayInterval))
		}
	}
	if changed {
		bal.publishLocked()
	}
	return next
}

// eject ejects e unless the cap forbids it, and reports whether it did.
func (bal *balancer) eject(e *endpoint, now int64, reason string, eps map[*runtime.SubConn]*endpoint) bool {
	if e.ejected || e.probation {
		return false
	}
	// Endpoints out because nothing answers there do not use up the cap:
	// it bounds how many this client judges outliers.
	out := 0
	for _, o := range eps {
		if (o.ejected || o.probation) && o.reason != ReasonUnreachable {
			out++
		}
	}
	if limit := max(1, int(bal.cfg.MaxEjectedFraction*float64(len(eps)))); out >= limit && reason != ReasonUnreachable {
		e.capRefused++
		return false
	}
	bal.ejectNow(e, now, reason)
	return true
}

// ejectNow takes e out for its next ejection time.
func (bal *balancer) ejectNow(e *endpoint, now int64, reason string) {
	e.multiplier++
	e.ejections++
	d := bal.cfg.ejectionFor(e.multiplier)
	e.ejected, e.ejectedUntil = true, now+int64(d)
	e.reason, e.ejectedAtNs, e.returnedAtNs = reason, now, 0
	e.firstFailNs = e.streakNs.Load()
	if e.firstFailNs == 0 || e.firstFailNs > now {
		e.firstFailNs = now
	}
	e.consecutive.Store(0)
	e.streakNs.Store(0)
	e.tripped.Store(0)
	bal.cfg.Logger.Info("zerohop endpoint ejected", "service", bal.cc.Service(), "endpoint", e.sc.Addr().String(),
		"reason", reason, "for", d, "ejections", e.ejections,
		"since_first_failure", time.Duration(now-e.firstFailNs).Round(time.Microsecond))
}

// publishLocked hands the inner balancer the endpoints it may pick from
// and installs the trials (see the package doc).
func (bal *balancer) publishLocked() {
	eps := *bal.eps.Load()
	var healthy, draining, listed []*runtime.SubConn
	var trials []*endpoint
	for _, sc := range bal.all {
		e := eps[sc]
		if e.listedUnhealthy {
			continue
		}
		listed = append(listed, sc)
		switch {
		case e.draining:
			draining = append(draining, sc)
		case !e.probeHealthy || e.ejected:
		case e.probation:
			trials = append(trials, e)
		default:
			healthy = append(healthy, sc)
		}
	}
	forward := healthy
	bal.panicking = false
	switch {
	case len(healthy) > 0:
	case len(draining) > 0:
		forward = draining
	default:
		forward, trials = listed, nil
		bal.panicking = len(listed) > 0
	}
	bal.pickMu.Lock()
	bal.trials = trials
	bal.pickMu.Unlock()
	// The inner balancer answers with UpdatePicker (now or later), which
	// uses the trials just set; the picker installed meanwhile gets them
	// too.
	bal.inner.UpdateState(runtime.BalancerState{SubConns: forward})
	bal.pickMu.Lock()
	bal.installLocked()
	bal.pickMu.Unlock()
}

// probe PINGs e until stop closes (e left, or discovery calls it
// unhealthy) or the balancer closes.
func (bal *balancer) probe(e *endpoint, stop chan struct{}) {
	defer bal.wg.Done()
	cfg := bal.cfg
	wait := time.Duration(rand.Int64N(int64(cfg.Interval))) // the first within one interval
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-bal.closing:
		case <-stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.suspect:
			if time.Since(last) < suspectGap {
				continue // probed just now; the timer brings the next
			}
			t.Stop()
		}
		last = time.Now()
		pctx, pcancel := context.WithTimeout(ctx, cfg.Timeout)
		status, err := e.sc.Ping(pctx)
		pcancel()
		if ctx.Err() != nil {
			return
		}
		bal.onProbeFrom(e, stop, status, err)
		j := (rand.Float64()*2 - 1) * cfg.Jitter
		t.Reset(time.Duration(float64(cfg.Interval) * (1 + j)))
	}
}

// suspectGap is the least time between two probes of one endpoint that
// failures ask for.
const suspectGap = 10 * time.Millisecond

// onProbeFrom is onProbe for the prober that stop belongs to: a prober
// stopped while its PING was out does not fold its result into the
// health of an endpoint that discovery called unhealthy, or serving
// again, meanwhile.
func (bal *balancer) onProbeFrom(e *endpoint, stop chan struct{}, status proto.Status, err error) {
	bal.mu.Lock()
	defer bal.mu.Unlock()
	if e.probeStop == stop {
		bal.onProbeLocked(e, status, err)
	}
}

// onProbe folds one probe's result into e's health.
func (bal *balancer) onProbe(e *endpoint, status proto.Status, err error) {
	bal.mu.Lock()
	defer bal.mu.Unlock()
	bal.onProbeLocked(e, status, err)
}

// onProbeLocked is onProbe with mu held.
func (bal *balancer) onProbeLocked(e *endpoint, status proto.Status, err error) {
	if bal.closed {
		return
	}
	changed := false
	if err != nil && unreachable(err) {
		// Nothing listens there: out now, whatever the thresholds.
		changed = bal.eject(e, bal.b.nowNs(), ReasonUnreachable, *bal.eps.Load())
	}
	if err != nil {
		e.probesFailed++
		e.lastProbeErr = err
		e.okStreak = 0
		e.failStreak++
		if e.probeHealthy && e.failStreak >= bal.cfg.UnhealthyThreshold {
			e.probeHealthy, changed = false, true
			bal.cfg.Logger.Info("zerohop endpoint unhealthy", "service", bal.cc.Service(), "endpoint", e.sc.Addr().String(),
				"failed_probes", e.failStreak, "err", err)
		}
	} else {
		e.probesOK++
		e.lastProbeErr = nil
		e.failStreak = 0
		e.okStreak++
		draining := status == proto.PongDraining
		if draining != e.draining {
			e.draining, changed = draining, true
			if draining {
				bal.cfg.Logger.Info("zerohop endpoint draining", "service", bal.cc.Service(), "endpoint", e.sc.Addr().String())
			}
		}
		if !e.probeHealthy && e.okStreak >= bal.cfg.HealthyThreshold {
			e.probeHealthy, changed = true, true
		}
	}
	if changed {
		bal.publishLocked()
	}
}

func (bal *balancer) stats() []EndpointStats {
	bal.mu.Lock()
	defer bal.mu.Unlock()
	eps := *bal.eps.Load()
	out := make([]EndpointStats, 0, len(eps))
	for _, sc := range bal.all {
		e := eps[sc]
		if e == nil {
			continue
		}
		st := EndpointStats{Service: bal.cc.Service(), Addr: sc.Addr(), State: e.state(),
			Ejections: e.ejections, Multiplier: e.multiplier, CapRefused: e.capRefused, Reason: e.reason,
			FirstFailure: wall(e.firstFailNs), EjectedAt: wall(e.ejectedAtNs), ReturnedAt: wall(e.returnedAtNs),
			Successes: e.okTotal.Load(), Failures: e.failTotal.Load(),
			ProbesOK: e.probesOK, ProbesFailed: e.probesFailed, LastProbeErr: e.lastProbeErr}
		out = append(out, st)
	}
	return out
}

// state is e's State; discovery's unhealthy first, then the checker's.
func (e *endpoint) state() State {
	switch {
	case e.listedUnhealthy || !e.probeHealthy:
		return Unhealthy
	case e.draining:
		return Draining
	case e.ejected:
		return Ejected
	case e.probation:
		return Probation
	}
	return Healthy
}

// epoch anchors the monotonic clock; wall turns its readings into times.
var epoch = time.Now()

func monoNs() int64 { return int64(time.Since(epoch)) }

func wall(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return epoch.Add(time.Duration(ns))
}
