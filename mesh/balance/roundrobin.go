package balance

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/zerohop/zerohop/runtime"
)

// maxSchedule bounds a round-robin cycle (see the package doc).
const maxSchedule = 4096

// RoundRobinBuilder builds weighted round-robin balancers.
type RoundRobinBuilder struct{}

var _ runtime.BalancerBuilder = RoundRobinBuilder{}

// RoundRobin returns a builder of weighted round-robin balancers.
func RoundRobin() RoundRobinBuilder { return RoundRobinBuilder{} }

// Build implements runtime.BalancerBuilder.
func (RoundRobinBuilder) Build(cc runtime.BalancerConn) runtime.Balancer {
	return &rrBalancer{cc: cc}
}

type rrBalancer struct{ cc runtime.BalancerConn }

// UpdateState implements runtime.Balancer.
func (r *rrBalancer) UpdateState(state runtime.BalancerState) {
	sched := schedule(pickable(state.SubConns))
	p := &rrPicker{sched: sched}
	if len(sched) > 0 {
		p.next.Store(rand.Uint64N(uint64(len(sched))))
	}
	r.cc.UpdatePicker(p)
}

// Done implements runtime.Balancer; round robin ignores load.
func (r *rrBalancer) Done(*runtime.SubConn, *runtime.AttemptResult) {}

// Close implements runtime.Balancer.
func (r *rrBalancer) Close() {}

type rrPicker struct {
	sched []*runtime.SubConn
	next  atomic.Uint64
}

// Pick implements runtime.Picker.
func (p *rrPicker) Pick(info *runtime.PickInfo) (*runtime.SubConn, error) {
	n := uint64(len(p.sched))
	if n == 0 {
		return nil, runtime.ErrNoSubConnAvailable
	}
	sc := p.sched[(p.next.Add(1)-1)%n]
	if sc == info.Failed {
		// The next different entry: at most one pass over the cycle.
		for k := uint64(0); k < n && sc == info.Failed; k++ {
			sc = p.sched[(p.next.Add(1)-1)%n]
		}
	}
	return sc, nil
}

// schedule is one cycle of smooth weighted round robin over subconns.
func schedule(subconns []*runtime.SubConn) []*runtime.SubConn {
	if len(subconns) == 0 {
		return nil
	}
	w := make([]uint64, len(subconns))
	var g, total uint64
	for i, sc := range subconns {
		w[i] = uint64(weightOf(sc))
		g = gcd(g, w[i])
	}
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	if total > maxSchedule {
		orig := total
		total = 0
		for i := range w {
			// Rounded to nearest, at least 1 (w < 2³², so no overflow).
			w[i] = max(1, (w[i]*maxSchedule*2/orig+1)/2)
			total += w[i]
		}
	}
	// nginx's smooth weighted round robin: each step every endpoint gains
	// its weight, the one with the most is taken and loses the total.
	cur := make([]int64, len(w))
	out := make([]*runtime.SubConn, 0, total)
	for range total {
		best := 0
		for i := range w {
			cur[i] += int64(w[i])
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(total)
		out = append(out, subconns[best])
	}
	return out
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
