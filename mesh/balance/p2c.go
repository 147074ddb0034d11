package balance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// Constants of P2C (see the package doc for where they come from).
const (
	// DefaultDecay is τ, the time constant of the peak-EWMA (Linkerd,
	// Finagle: 10 s).
	DefaultDecay = 10 * time.Second
	// DefaultForcePick is how long an endpoint may go unpicked before it
	// is picked instead of the winner (go-zero: 1 s).
	DefaultForcePick = time.Second
	// failureFloor is the least cost a failed attempt leaves.
	failureFloor = float64(time.Millisecond)
	// penalty is the load of an endpoint whose first call is pending
	// (Finagle: Long.MaxValue >> 16 ns).
	penalty = float64(math.MaxInt64 >> 16)
)

// P2COption configures NewP2C.
type P2COption func(*p2cConfig) error

type p2cConfig struct {
	tauNs       float64
	forcePickNs int64
	// For tests: the clock and the in-flight count.
	now      func() int64
	inflight func(*runtime.SubConn) int64
}

// WithDecay sets τ, the peak-EWMA's time constant (default DefaultDecay).
func WithDecay(tau time.Duration) P2COption {
	return func(c *p2cConfig) error {
		if tau <= 0 {
			return fmt.Errorf("balance: WithDecay(%v): τ must be positive (default %v)", tau, DefaultDecay)
		}
		c.tauNs = float64(tau)
		return nil
	}
}

// WithForcePick sets how long an endpoint may go unpicked before a pick
// that would pass it over takes it instead (default DefaultForcePick);
// 0 turns forcing off.
func WithForcePick(d time.Duration) P2COption {
	return func(c *p2cConfig) error {
		if d < 0 {
			return fmt.Errorf("balance: WithForcePick(%v): negative; give 0 to turn forcing off (default %v)", d, DefaultForcePick)
		}
		c.forcePickNs = int64(d)
		return nil
	}
}

// P2CBuilder builds P2C balancers (runtime.BalancerBuilder).
type P2CBuilder struct {
	cfg    p2cConfig
	forced atomic.Uint64
}

var _ runtime.BalancerBuilder = (*P2CBuilder)(nil)

// P2C returns a builder of the default balancer, p2c over peak-EWMA with
// the default constants.
func P2C() *P2CBuilder {
	b, _ := NewP2C()
	return b
}

// NewP2C returns a builder of p2c balancers configured by opts; an error
// names the option at fault.
func NewP2C(opts ...P2COption) (*P2CBuilder, error) {
	cfg := p2cConfig{tauNs: float64(DefaultDecay), forcePickNs: int64(DefaultForcePick),
		now: monoNs, inflight: (*runtime.SubConn).InFlight}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &P2CBuilder{cfg: cfg}, nil
}

// P2CStats counts what a P2CBuilder's balancers did.
type P2CStats struct {
	// Forced is how many picks took a neglected endpoint instead of the
	// one with the lower load.
	Forced uint64
}

// Stats reads the counters of every balancer the builder made.
func (b *P2CBuilder) Stats() P2CStats { return P2CStats{Forced: b.forced.Load()} }

// Build implements runtime.BalancerBuilder.
func (b *P2CBuilder) Build(cc runtime.BalancerConn) runtime.Balancer {
	return &p2cBalancer{cc: cc, b: b}
}

// estimate is one endpoint's peak-EWMA and pick time. Padded to a cache
// line: Done writes it on the client loop while picks read their
// neighbours' on other cores.
type estimate struct {
	costBits atomic.Uint64 // float64 ns; 0 before the first sample
	stampNs  atomic.Int64  // when costBits was written
	pickedNs atomic.Int64  // when last picked (coarse, see touch); 0: never
	_        [40]byte
}

// read is the cost decayed to now.
func (e *estimate) read(now int64, tauNs float64) float64 {
	c := math.Float64frombits(e.costBits.Load())
	if c == 0 {
		return 0
	}
	if td := now - e.stampNs.Load(); td > 0 {
		c *= math.Exp(-float64(td) / tauNs)
	}
	return c
}

// observe folds sample x (ns) in at now.
func (e *estimate) observe(x float64, now int64, tauNs float64) {
	c := math.Float64frombits(e.costBits.Load())
	if x <= c {
		w := 1.0
		if td := now - e.stampNs.Load(); td > 0 {
			w = math.Exp(-float64(td) / tauNs)
		}
		x = c*w + x*(1-w)
	}
	e.costBits.Store(math.Float64bits(x))
	e.stampNs.Store(now)
}

// p2cBalancer keeps the estimates of one service's endpoints.
type p2cBalancer struct {
	cc     runtime.BalancerConn
	b      *P2CBuilder
	states atomic.Pointer[map[*runtime.SubConn]*estimate]
}

// UpdateState implements runtime.Balancer.
func (p *p2cBalancer) UpdateState(state runtime.BalancerState) {
	var old map[*runtime.SubConn]*estimate
	if m := p.states.Load(); m != nil {
		old = *m
	}
	next := make(map[*runtime.SubConn]*estimate, len(state.SubConns))
	for _, sc := range state.SubConns {
		e := old[sc]
		if e == nil {
			e = new(estimate)
		}
		next[sc] = e
	}
	p.states.Store(&next)
	cands := pickable(state.SubConns)
	pk := &p2cPicker{nodes: make([]p2cNode, len(cands)), cfg: &p.b.cfg, forced: &p.b.forced}
	var sum uint64
	for i, sc := range cands {
		w := weightOf(sc)
		sum += uint64(w)
		pk.nodes[i] = p2cNode{sc: sc, est: next[sc], invWeight: 1 / float64(w), weight: uint64(w), upTo: sum}
		if w != weightOf(cands[0]) {
			pk.weighted = true
		}
	}
	pk.total = sum
	p.cc.UpdatePicker(pk)
}

// Done implements runtime.Balancer: it folds the attempt's latency, or its
// failure, into the endpoint's estimate.
func (p *p2cBalancer) Done(sc *runtime.SubConn, r *runtime.AttemptResult) {
	m := p.states.Load()
	if m == nil {
		return
	}
	e := (*m)[sc]
	if e == nil {
		return // removed since the attempt was picked
	}
	cfg := &p.b.cfg
	now := cfg.now()
	e.observe(sampleOf(r, e, now, cfg.tauNs), now, cfg.tauNs)
}

// sampleOf is the latency sample an attempt gives (see the package doc).
func sampleOf(r *runtime.AttemptResult, e *estimate, now int64, tauNs float64) float64 {
	if r.Answered && r.Status != proto.StatusOverloaded && r.Status != proto.StatusRateLimited {
		if r.ServiceTime > 0 {
			return float64(r.ServiceTime)
		}
		if r.RTT > 0 {
			return float64(r.RTT)
		}
		return 1 // answered in no measurable time: still a sample
	}
	return max(float64(r.RetryAfter), 2*e.read(now, tauNs), failureFloor)
}

// Close implements runtime.Balancer.
func (p *p2cBalancer) Close() {}

type p2cNode struct {
	sc        *runtime.SubConn
	est       *estimate
	invWeight float64
	weight    uint64
	upTo      uint64 // the weights of the nodes up to this one, itself included
}

// p2cPicker is immutable once installed.
type p2cPicker struct {
	nodes    []p2cNode
	weighted bool   // the weights differ: draw candidates in proportion to them
	total    uint64 // the sum of the weights
	cfg      *p2cConfig
	forced   *atomic.Uint64
}

// Pick implements runtime.Picker.
func (p *p2cPicker) Pick(info *runtime.PickInfo) (*runtime.SubConn, error) {
	n := len(p.nodes)
	switch n {
	case 0:
		return nil, runtime.ErrNoSubConnAvailable
	case 1:
		return p.nodes[0].sc, nil
	}
	i, j := p.draw(n)
	a, b := &p.nodes[i], &p.nodes[j]
	now := p.cfg.now()
	switch info.Failed {
	case a.sc:
		b.touch(now, p.cfg.forcePickNs)
		return b.sc, nil
	case b.sc:
		a.touch(now, p.cfg.forcePickNs)
		return a.sc, nil
	}
	if p.load(b, now) < p.load(a, now) {
		a, b = b, a
	}
	if f := p.cfg.forcePickNs; f > 0 {
		if last := b.est.pickedNs.Load(); now-last > f && b.est.pickedNs.CompareAndSwap(last, now) {
			p.forced.Add(1)
			return b.sc, nil
		}
	}
	a.touch(now, p.cfg.forcePickNs)
	return a.sc, nil
}

// draw returns two distinct candidates: uniformly, or with weights in
// proportion to them (the second among the others).
func (p *p2cPicker) draw(n int) (int, int) {
	if !p.weighted {
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		return i, j
	}
	i := p.find(rand.Uint64N(p.total))
	r := rand.Uint64N(p.total - p.nodes[i].weight)
	if r >= p.nodes[i].upTo-p.nodes[i].weight {
		r += p.nodes[i].weight // skip i's own range
	}
	return i, p.find(r)
}

// find returns the node whose weight range holds r (< total).
func (p *p2cPicker) find(r uint64) int {
	lo, hi := 0, len(p.nodes)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.nodes[m].upTo > r {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// load is the node's cost × (inflight + 1) / weight, decayed to now.
func (p *p2cPicker) load(nd *p2cNode, now int64) float64 {
	inflight := float64(p.cfg.inflight(nd.sc))
	c := nd.est.read(now, p.cfg.tauNs)
	if c == 0 {
		if inflight > 0 {
			return penalty + inflight
		}
		return 0
	}
	return c * (inflight + 1) * nd.invWeight
}

// touch records a pick, writing only when the stamp is older than a
// sixteenth of the forcing period (the forcing test is off by at most
// that much).
func (nd *p2cNode) touch(now, forcePickNs int64) {
	if last := nd.est.pickedNs.Load(); now-last > forcePickNs>>4 {
		nd.est.pickedNs.Store(now)
	}
}
