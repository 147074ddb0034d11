package shed

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Limiter is what both shedders offer a loop; *Loop and *GradientLoop
// implement it, so the runtime's middleware can take either.
type Limiter interface {
	Allow(now int64, queueDelay time.Duration) (ok bool, retry time.Duration)
	Done(now int64, rt, wait time.Duration)
	Release(now int64)
}

var (
	_ Limiter = (*Loop)(nil)
	_ Limiter = (*GradientLoop)(nil)
)

// Gradient2 defaults: Netflix concurrency-limits Gradient2Limit.Builder.
const (
	G2InitialLimit = 20
	G2MinLimit     = 20
	G2MaxLimit     = 200
	G2Smoothing    = 0.2
	G2QueueSize    = 4
	G2LongWindow   = 600 // samples
	g2Warmup       = 10  // samples averaged before the EMA starts (ExpAvgMeasurement)
	g2Retry        = 100 * time.Millisecond
)

// GradientConfig describes a Gradient2 shedder; zero fields take the G2
// defaults.
type GradientConfig struct {
	Loops                            int
	InitialLimit, MinLimit, MaxLimit int
	Smoothing                        float64
	QueueSize                        int
	LongWindow                       int
}

// Gradient is Netflix's Gradient2 concurrency limit (concurrency-limits
// Gradient2Limit.java), the alternative to the default Shedder; see the
// package doc for why it is not the default. Per completed call, with
// rtt = wait + rt (admission to completion):
//
//	short = rtt
//	long  = EMA of rtt over LongWindow (600) samples, the first 10 averaged;
//	        long ← 0.9·long when long/short > 2 (recovering from overload)
//	if inflight ≥ limit/2:
//	    g     = clamp(long/short, 0.5, 1)
//	    limit ← (1−s)·limit + s·(g·limit + QueueSize),  s = 0.2, QueueSize = 4
//	    limit ← clamp(limit, MinLimit 20, MaxLimit 200)
//
// and a call is admitted while inflight < limit. Each loop runs its own
// limit, single-writer like the default Shedder.
type Gradient struct {
	cfg    GradientConfig
	shards []*GradientLoop
}

// NewGradient builds a Gradient2 shedder.
func NewGradient(cfg GradientConfig) (*Gradient, error) {
	if cfg.Loops < 1 {
		return nil, fmt.Errorf("shed: GradientConfig.Loops is %d: give the number of event loops (≥ 1)", cfg.Loops)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.InitialLimit, G2InitialLimit)
	def(&cfg.MinLimit, G2MinLimit)
	def(&cfg.MaxLimit, G2MaxLimit)
	def(&cfg.QueueSize, G2QueueSize)
	def(&cfg.LongWindow, G2LongWindow)
	if cfg.Smoothing == 0 {
		cfg.Smoothing = G2Smoothing
	}
	if cfg.MinLimit < 1 || cfg.MaxLimit < cfg.MinLimit || cfg.Smoothing <= 0 || cfg.Smoothing > 1 || cfg.LongWindow < g2Warmup {
		return nil, fmt.Errorf("shed: GradientConfig %+v: want 1 ≤ MinLimit ≤ MaxLimit, 0 < Smoothing ≤ 1, LongWindow ≥ %d", cfg, g2Warmup)
	}
	g := &Gradient{cfg: cfg, shards: make([]*GradientLoop, cfg.Loops)}
	for i := range g.shards {
		g.shards[i] = &GradientLoop{g: g, limit: float64(min(max(cfg.InitialLimit, cfg.MinLimit), cfg.MaxLimit))}
	}
	return g, nil
}

// Loop returns event loop i's handle.
func (g *Gradient) Loop(i int) *GradientLoop { return g.shards[i] }

// GradientLoop is one loop's Gradient2 limit; the same calling rules as
// Loop apply.
type GradientLoop struct {
	g        *Gradient
	limit    float64
	inflight int64
	long     float64 // ns
	samples  int
	admitted uint64
	refused  uint64
}

// Allow admits a call while fewer than the limit are in flight; queueDelay
// is not used by Gradient2.
func (p *GradientLoop) Allow(now int64, queueDelay time.Duration) (bool, time.Duration) {
	if float64(p.inflight) >= math.Floor(p.limit) {
		atomic.StoreUint64(&p.refused, p.refused+1)
		return false, g2Retry
	}
	p.inflight++
	atomic.StoreUint64(&p.admitted, p.admitted+1)
	return true, 0
}

// Release ends an admitted call that was not served.
func (p *GradientLoop) Release(now int64) {
	if p.inflight > 0 {
		p.inflight--
	}
}

// Done ends a served call and updates the limit from its rt + wait.
func (p *GradientLoop) Done(now int64, rt, wait time.Duration) {
	inflight := p.inflight // as Netflix samples it: including this call
	p.Release(now)
	cfg := &p.g.cfg
	short := float64(max(rt+wait, 1))
	p.samples++
	if p.samples <= g2Warmup {
		p.long += (short - p.long) / float64(p.samples)
	} else {
		f := 2 / float64(cfg.LongWindow+1)
		p.long = p.long*(1-f) + short*f
	}
	if p.long/short > 2 {
		p.long *= 0.9
	}
	if float64(inflight) < p.limit/2 {
		return // application-limited: no evidence either way
	}
	grad := max(0.5, min(1, p.long/short))
	next := p.limit*grad + float64(cfg.QueueSize)
	next = p.limit*(1-cfg.Smoothing) + next*cfg.Smoothing
	p.limit = max(float64(cfg.MinLimit), min(float64(cfg.MaxLimit), next))
}

// Limit returns the loop's current limit (only from its goroutine).
func (p *GradientLoop) Limit() float64 { return p.limit }

// Stats returns admitted and refused counts summed over loops.
func (g *Gradient) Stats() Stats {
	var st Stats
	for _, p := range g.shards {
		st.Admitted += atomic.LoadUint64(&p.admitted)
		st.Refused += atomic.LoadUint64(&p.refused)
	}
	return st
}
