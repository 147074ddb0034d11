package shed

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Defaults, with the sources given in the package doc.
const (
	DefaultWindow       = 5 * time.Second         // go-zero defaultWindow
	DefaultBuckets      = 50                      // go-zero defaultBuckets
	DefaultCPUThreshold = 900                     // per mille; go-zero defaultCpuThreshold
	DefaultCoolOff      = time.Second             // go-zero coolOffDuration
	DefaultQueueDelay   = 5 * time.Millisecond    // CoDel target, RFC 8289
	DefaultWaitRatio    = 1.0                     // ours: see the package doc
	waitHold            = 0.1                     // ours: see the package doc
	defaultMinRT        = int64(time.Second)      // go-zero defaultMinRt
	flyingBeta          = 0.9                     // go-zero flyingBeta
	cpuMax              = 1000                    // per mille
	overloadFactorFloor = 0.1                     // go-zero overloadFactorLowerBound
	maxBuckets          = 1000                    // sanity bound on Config.Buckets
	minBucket           = int64(time.Millisecond) // sanity bound on Window/Buckets
)

// Config describes a Shedder. Zero fields take the defaults above.
type Config struct {
	// Loops is the number of event loops (≥ 1).
	Loops int
	// Window and Buckets: the rolling window of completions.
	Window  time.Duration
	Buckets int
	// CPU returns the CPU usage in per mille (0..1000); nil leaves the
	// CPU out of the gate. CPUSampler.Usage fits.
	CPU func() int64
	// CPUThreshold opens the gate at or above this usage (per mille).
	CPUThreshold int64
	// CoolOff keeps the gate open this long after it was last open, once
	// a call has been refused.
	CoolOff time.Duration
	// QueueDelay opens the gate for a call that waited at least this long
	// between RX and the handler's start; negative turns it off.
	QueueDelay time.Duration
	// WaitRatio opens the gate when completed calls waited for a worker,
	// on a moving average, at least WaitRatio × minRT; negative turns it
	// off.
	WaitRatio float64
}

// Shedder holds one state per loop. Each loop applies the formula to its
// own calls (Little's law holds for each loop's share of the traffic), so
// loops share nothing but the CPU reading.
type Shedder struct {
	cfg      Config
	bucketNs int64
	shards   []*Loop
}

// New builds a Shedder; errors name the field to fix.
func New(cfg Config) (*Shedder, error) {
	if cfg.Loops < 1 {
		return nil, fmt.Errorf("shed: Config.Loops is %d: give the number of event loops (≥ 1)", cfg.Loops)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Buckets == 0 {
		cfg.Buckets = DefaultBuckets
	}
	if cfg.Buckets < 2 || cfg.Buckets > maxBuckets {
		return nil, fmt.Errorf("shed: Config.Buckets is %d: give 2..%d", cfg.Buckets, maxBuckets)
	}
	bucketNs := int64(cfg.Window) / int64(cfg.Buckets)
	if bucketNs < minBucket {
		return nil, fmt.Errorf("shed: Config.Window %v over %d buckets gives buckets under 1ms: lengthen the window or use fewer buckets", cfg.Window, cfg.Buckets)
	}
	if cfg.CPUThreshold == 0 {
		cfg.CPUThreshold = DefaultCPUThreshold
	}
	if cfg.CPUThreshold < 1 || cfg.CPUThreshold >= cpuMax {
		return nil, fmt.Errorf("shed: Config.CPUThreshold is %d: give per mille in 1..999", cfg.CPUThreshold)
	}
	if cfg.CoolOff == 0 {
		cfg.CoolOff = DefaultCoolOff
	}
	if cfg.QueueDelay == 0 {
		cfg.QueueDelay = DefaultQueueDelay
	}
	if cfg.WaitRatio == 0 {
		cfg.WaitRatio = DefaultWaitRatio
	}
	s := &Shedder{cfg: cfg, bucketNs: bucketNs, shards: make([]*Loop, cfg.Loops)}
	for i := range s.shards {
		s.shards[i] = &Loop{
			s:       s,
			buckets: make([]bucket, cfg.Buckets),
			epoch:   math.MinInt64,
			minRT:   defaultMinRT,
		}
		s.shards[i].refresh()
	}
	return s, nil
}

// Loop returns event loop i's handle (0 ≤ i < Config.Loops).
func (s *Shedder) Loop(i int) *Loop { return s.shards[i] }

// RetryAfter is the hint given with every refusal: one bucket.
func (s *Shedder) RetryAfter() time.Duration { return time.Duration(s.bucketNs) }

type bucket struct {
	epoch   int64
	pass    int64 // completions
	rtSum   int64 // ns
	rtCount int64
}

// Loop is one event loop's shedder. See the package doc for who may call
// what.
type Loop struct {
	s       *Shedder
	buckets []bucket
	epoch   int64 // the bucket in progress
	next    int64 // when the next bucket starts

	flying    int64
	avgFlying float64
	avgWait   float64 // ns, moving average over completions (β = 0.9)

	// derived from the complete buckets at each bucket change
	maxFlight float64
	minRT     int64 // ns

	// cold: no complete bucket in the window has completions, so the
	// bucket in progress stands in (coldEstimate).
	cold bool

	overloadAt int64 // last time the gate was open
	dropped    bool  // refused a call since the gate was last found shut past cool-off

	// Stats, single writer (plain read, atomic store).
	admitted, refused, inflight uint64
}

func store(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

// Allow decides a call at now that waited queueDelay between RX and this
// point. Admitted calls must end with Done or Release. It does not allocate.
func (p *Loop) Allow(now int64, queueDelay time.Duration) (ok bool, retry time.Duration) {
	p.advance(now)
	if p.shouldDrop(now, queueDelay) {
		p.dropped = true
		store(&p.refused, p.refused+1)
		return false, time.Duration(p.s.bucketNs)
	}
	p.flying++
	store(&p.inflight, uint64(p.flying))
	store(&p.admitted, p.admitted+1)
	return true, 0
}

// Done ends an admitted call that was served: rt is how long its handler
// ran, wait how long it waited between Allow and the handler's start (a
// worker queue; 0 for a handler run on the loop).
func (p *Loop) Done(now int64, rt, wait time.Duration) {
	p.advance(now)
	p.release()
	b := &p.buckets[p.slot(p.epoch)]
	b.pass++
	b.rtSum += max(int64(rt), 0)
	b.rtCount++
	p.avgWait = p.avgWait*flyingBeta + float64(max(wait, 0))*(1-flyingBeta)
}

// DoneBatch ends n admitted calls served off the loop (on workers, which
// report to the loop in batches) whose handler times sum to rtSum and
// whose waits for a worker sum to waitSum. The window gets the exact sums
// and the moving averages step n times, the waits at their mean; all n
// count in the bucket of now.
func (p *Loop) DoneBatch(now, n int64, rtSum, waitSum time.Duration) {
	if n <= 0 {
		return
	}
	p.advance(now)
	mean := float64(max(waitSum, 0)) / float64(n)
	for range n {
		p.release()
		p.avgWait = p.avgWait*flyingBeta + mean*(1-flyingBeta)
	}
	b := &p.buckets[p.slot(p.epoch)]
	b.pass += n
	b.rtSum += max(int64(rtSum), 0)
	b.rtCount += n
}

// ReleaseBatch is n calls of Release.
func (p *Loop) ReleaseBatch(now, n int64) {
	if n <= 0 {
		return
	}
	p.advance(now)
	for range n {
		p.release()
	}
}

// Release ends an admitted call that was not served (dropped before its
// handler ran); it leaves no response-time sample.
func (p *Loop) Release(now int64) {
	p.advance(now)
	p.release()
}

func (p *Loop) release() {
	if p.flying > 0 {
		p.flying--
	}
	store(&p.inflight, uint64(p.flying))
	// go-zero averages at completions only, so the average lags a rise in
	// flight and a server takes on as much as it can before refusing.
	p.avgFlying = p.avgFlying*flyingBeta + float64(p.flying)*(1-flyingBeta)
}

func (p *Loop) slot(epoch int64) int { return int(uint64(epoch) % uint64(len(p.buckets))) }

// advance moves the bucket in progress to now's and, when it changed,
// recomputes the bound from the complete buckets.
func (p *Loop) advance(now int64) {
	if now < p.next {
		return // the common case, without a division
	}
	e := now / p.s.bucketNs
	if e <= p.epoch {
		return // same bucket (or a clock a hair behind): count it here
	}
	b := &p.buckets[p.slot(e)]
	*b = bucket{epoch: e}
	p.epoch = e
	p.next = (e + 1) * p.s.bucketNs
	p.refresh()
}

func (p *Loop) refresh() {
	n := int64(len(p.buckets))
	maxPass, minRT := int64(1), int64(math.MaxInt64)
	for i := range p.buckets {
		b := &p.buckets[i]
		if b.epoch >= p.epoch || b.epoch <= p.epoch-n {
			continue // in progress, or older than the window
		}
		maxPass = max(maxPass, b.pass)
		if b.rtCount > 0 {
			avg := (b.rtSum + b.rtCount/2) / b.rtCount
			minRT = min(minRT, avg)
		}
	}
	p.cold = minRT == math.MaxInt64
	if p.cold {
		minRT = defaultMinRT
	}
	p.minRT = minRT
	p.maxFlight = max(1, float64(maxPass)*float64(minRT)/float64(p.s.bucketNs))
}

// coldEstimate derives the bound from the bucket in progress: its
// completions scaled to a whole bucket and its average handler time.
func (p *Loop) coldEstimate(now int64) {
	b := &p.buckets[p.slot(p.epoch)]
	if b.rtCount == 0 {
		return
	}
	elapsed := max(now-p.epoch*p.s.bucketNs, minBucket)
	maxPass := max(1, float64(b.pass)*float64(p.s.bucketNs)/float64(elapsed))
	p.minRT = (b.rtSum + b.rtCount/2) / b.rtCount
	p.maxFlight = max(1, maxPass*float64(p.minRT)/float64(p.s.bucketNs))
}

func (p *Loop) shouldDrop(now int64, queueDelay time.Duration) bool {
	cfg := &p.s.cfg
	if p.cold {
		p.coldEstimate(now)
	}
	cpu := int64(0)
	if cfg.CPU != nil {
		cpu = cfg.CPU()
	}
	waitLimit := cfg.WaitRatio * float64(p.minRT)
	if p.dropped {
		waitLimit *= waitHold // hysteresis: see the package doc
	}
	open := cpu >= cfg.CPUThreshold ||
		(cfg.QueueDelay > 0 && queueDelay >= cfg.QueueDelay) ||
		(cfg.WaitRatio > 0 && p.avgWait >= waitLimit)
	if open {
		p.overloadAt = now
	} else if !p.dropped || now-p.overloadAt >= int64(cfg.CoolOff) {
		p.dropped = false
		return false
	}
	factor := float64(cpuMax-cpu) / float64(cpuMax-cfg.CPUThreshold)
	factor = min(1, max(overloadFactorFloor, factor))
	limit := p.maxFlight * factor
	return p.avgFlying > limit && float64(p.flying) > limit
}

// State is a loop's view of the formula, for tests and diagnostics.
type State struct {
	Flying    int64
	AvgFlying float64
	MaxFlight float64 // maxPass · minRT / bucket, before the CPU factor
	MinRT     time.Duration
	AvgWait   time.Duration
}

// State returns the loop's current bound. Only the loop's goroutine may
// call it.
func (p *Loop) State() State {
	return State{Flying: p.flying, AvgFlying: p.avgFlying, MaxFlight: p.maxFlight, MinRT: time.Duration(p.minRT), AvgWait: time.Duration(p.avgWait)}
}

// Stats are counters summed over loops.
type Stats struct {
	Admitted, Refused uint64
	InFlight          uint64
}

// Stats returns the counters of all loops; safe from any goroutine.
func (s *Shedder) Stats() Stats {
	var st Stats
	for _, p := range s.shards {
		st.Admitted += atomic.LoadUint64(&p.admitted)
		st.Refused += atomic.LoadUint64(&p.refused)
		st.InFlight += atomic.LoadUint64(&p.inflight)
	}
	return st
}
