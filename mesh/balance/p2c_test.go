package balance

import (
	"container/heap"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

func TestP2CPicksServingThenDrainingNeverUnhealthy(t *testing.T) {
	health := []runtime.EndpointHealth{runtime.HealthServing, runtime.HealthDraining, runtime.HealthUnhealthy, runtime.HealthServing}
	eps := addrs(4, func(i int, e *runtime.Endpoint) { e.Health = health[i] })
	for _, b := range []runtime.BalancerBuilder{P2C(), RoundRobin()} {
		c, scs, _ := setup(t, b, eps...)
		counts := map[*runtime.SubConn]int{}
		for range 2000 {
			counts[c.pick(t, &runtime.PickInfo{})]++
		}
		if counts[scs[1]] != 0 || counts[scs[2]] != 0 || counts[scs[0]] == 0 || counts[scs[3]] == 0 {
			t.Errorf("%T: picks%s: want only the serving [0] and [3]", b, share(counts, scs))
		}
		// Only draining and unhealthy left: the draining one.
		c.balancer.UpdateState(runtime.BalancerState{SubConns: scs[1:3]})
		for range 100 {
			if sc := c.pick(t, &runtime.PickInfo{}); sc != scs[1] {
				t.Fatalf("%T: picked %v with only a draining and an unhealthy endpoint, want the draining %v", b, sc.Addr(), scs[1].Addr())
			}
		}
		// Only unhealthy: nothing.
		c.balancer.UpdateState(runtime.BalancerState{SubConns: scs[2:3]})
		if sc, err := c.picker.Load().p.Pick(&runtime.PickInfo{}); !errors.Is(err, runtime.ErrNoSubConnAvailable) {
			t.Errorf("%T: only an unhealthy endpoint: Pick = %v, %v; want ErrNoSubConnAvailable", b, sc, err)
		}
	}
}

// With equal costs and nothing in flight every comparison ties and the
// first candidate, drawn uniformly, wins: the spread is even.
func TestP2CEvenSpreadAtEqualCost(t *testing.T) {
	clk := new(fakeClock)
	c, scs, _ := setup(t, testP2C(t, clk, nil, WithForcePick(0)), addrs(3)...)
	for _, sc := range scs {
		c.done(sc, runtime.AttemptResult{Answered: true, ServiceTime: 20 * time.Microsecond})
	}
	counts := map[*runtime.SubConn]int{}
	const picks = 30000
	for range picks {
		counts[c.pick(t, &runtime.PickInfo{})]++
	}
	t.Logf("picks:%s", share(counts, scs))
	for _, sc := range scs {
		if d := math.Abs(float64(counts[sc])-picks/3) / (picks / 3); d > 0.1 {
			t.Errorf("%v got %d of %d picks, %.1f%% off even", sc.Addr(), counts[sc], picks, 100*d)
		}
	}
}

// completion is a simulated call in flight.
type completion struct {
	at int64
	sc *runtime.SubConn
}

type completions []completion

func (h completions) Len() int           { return len(h) }
func (h completions) Less(i, j int) bool { return h[i].at < h[j].at }
func (h completions) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *completions) Push(x any)        { *h = append(*h, x.(completion)) }
func (h *completions) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// simulate drives picker and balancer with a closed loop of outstanding
// calls on the fake clock: each call takes serviceTime(sc) (with ±10 %
// noise), and its completion starts the next call. It returns the picks.
func simulate(t *testing.T, c *capture, clk *fakeClock, in *fakeInflight, outstanding, calls int,
	serviceTime func(*runtime.SubConn) time.Duration) map[*runtime.SubConn]int {
	counts := map[*runtime.SubConn]int{}
	var h completions
	issue := func() {
		sc := c.pick(t, &runtime.PickInfo{})
		counts[sc]++
		in.add(sc, 1)
		d := float64(serviceTime(sc)) * (0.9 + 0.2*rand.Float64())
		heap.Push(&h, completion{at: clk.now() + int64(d), sc: sc})
	}
	for range outstanding {
		issue()
	}
	for n := outstanding; n < calls; n++ {
		next := heap.Pop(&h).(completion)
		if d := next.at - clk.now(); d > 0 {
			clk.advance(time.Duration(d))
		}
		in.add(next.sc, -1)
		c.done(next.sc, runtime.AttemptResult{Answered: true, ServiceTime: serviceTime(next.sc)})
		issue()
	}
	return counts
}

// Under a closed loop of 32 outstanding calls to endpoints of equal speed,
// in-flight counts settle in proportion to the weights, and so do the
// calls.
func TestP2CWeightsUnderLoad(t *testing.T) {
	for _, weights := range [][]uint32{{1, 1, 1}, {1, 2, 3}, {1, 1, 4}} {
		clk, in := new(fakeClock), new(fakeInflight)
		eps := addrs(len(weights), func(i int, e *runtime.Endpoint) { e.Weight = weights[i] })
		c, scs, _ := setup(t, testP2C(t, clk, in), eps...)
		const calls = 60000
		counts := simulate(t, c, clk, in, 32, calls, func(*runtime.SubConn) time.Duration { return 50 * time.Microsecond })
		t.Logf("weights %v: picks%s", weights, share(counts, scs))
		var total uint32
		for _, w := range weights {
			total += w
		}
		for i, sc := range scs {
			want := float64(calls) * float64(weights[i]) / float64(total)
			if d := math.Abs(float64(counts[sc])-want) / want; d > 0.1 {
				t.Errorf("weights %v: [%d] got %d picks, want %.0f ± 10%% (%.1f%% off)", weights, i, counts[sc], want, 100*d)
			}
		}
	}
}

// One endpoint takes 5 ms a call, the others 20 µs: nearly every call goes
// to the fast ones, the slow one getting the forced picks and little more.
func TestP2CAvoidsSlowEndpoint(t *testing.T) {
	clk, in := new(fakeClock), new(fakeInflight)
	c, scs, _ := setup(t, testP2C(t, clk, in), addrs(3)...)
	counts := simulate(t, c, clk, in, 8, 50000, func(sc *runtime.SubConn) time.Duration {
		if sc == scs[0] {
			return 5 * time.Millisecond
		}
		return 20 * time.Microsecond
	})
	t.Logf("slow [0], simulated %v: picks%s", time.Duration(clk.now()-int64(time.Hour)), share(counts, scs))
	if frac := float64(counts[scs[1]]+counts[scs[2]]) / 50000; frac < 0.9 {
		t.Errorf("%.1f%% of calls went to the fast endpoints, want ≥ 90%%", 100*frac)
	}
}

// A slower sample replaces the estimate at once; faster ones pull it down
// with weight 1 − exp(−Δt/τ); reads decay it with exp(−Δt/τ).
func TestPeakEWMAFormula(t *testing.T) {
	const tau = float64(10 * time.Second)
	var e estimate
	now := int64(time.Hour)
	e.observe(float64(20*time.Microsecond), now, tau)
	if got := e.read(now, tau); got != float64(20*time.Microsecond) {
		t.Fatalf("first sample: cost %v, want 20µs", time.Duration(got))
	}
	now += int64(time.Millisecond)
	e.observe(float64(5*time.Millisecond), now, tau)
	if got := e.read(now, tau); got != float64(5*time.Millisecond) {
		t.Fatalf("a slower sample: cost %v, want it to replace the estimate (5ms)", time.Duration(got))
	}
	// Fast samples every 100 ms for 10 s (= τ): c·e⁻¹ + x·(1 − e⁻¹).
	want := float64(5 * time.Millisecond)
	for range 100 {
		now += int64(100 * time.Millisecond)
		e.observe(float64(20*time.Microsecond), now, tau)
		w := math.Exp(-float64(100*time.Millisecond) / tau)
		want = want*w + float64(20*time.Microsecond)*(1-w)
	}
	closed := float64(5*time.Millisecond)*math.Exp(-1) + float64(20*time.Microsecond)*(1-math.Exp(-1))
	got := e.read(now, tau)
	if math.Abs(got-want) > 1 || math.Abs(got-closed)/closed > 1e-9 {
		t.Fatalf("after τ of fast samples: cost %v, want %v (closed form %v)", time.Duration(got), time.Duration(want), time.Duration(closed))
	}
	t.Logf("5 ms peak, then τ = 10 s of 20 µs samples: %v (= 5ms·e⁻¹ + 20µs·(1−e⁻¹))", time.Duration(got))
	// A read 10 s later, with no sample, decays by e⁻¹ and writes nothing.
	if r := e.read(now+int64(10*time.Second), tau); math.Abs(r-got*math.Exp(-1)) > 1 {
		t.Errorf("read after τ without samples: %v, want %v", time.Duration(r), time.Duration(got*math.Exp(-1)))
	}
	if e.read(now, tau) != got {
		t.Error("a read changed the estimate")
	}
}

// After a 5 ms sample the endpoint loses every comparison; it is picked
// again only when forced, once per forcing period. Each forced pick brings
// a fast sample, which pulls the estimate down by 1 − exp(−1 s/τ); once it
// is back near the others' it wins against endpoints with calls in flight.
func TestP2CReactsToSlowSampleAndForcesNeglected(t *testing.T) {
	clk, in := new(fakeClock), new(fakeInflight)
	b := testP2C(t, clk, in)
	c, scs, _ := setup(t, b, addrs(3)...)
	fast := runtime.AttemptResult{Answered: true, ServiceTime: 20 * time.Microsecond}
	for _, sc := range scs {
		c.done(sc, fast)
	}
	// First picks force every endpoint once (none was ever picked).
	for range 100 {
		c.pick(t, &runtime.PickInfo{})
	}
	c.done(scs[0], runtime.AttemptResult{Answered: true, ServiceTime: 5 * time.Millisecond})
	in.add(scs[1], 2)
	in.add(scs[2], 2)
	forcedBefore := b.Stats().Forced
	// 10.5 s of picks 1.05 ms apart, the fast endpoints answering each.
	slow := 0
	for range 10000 {
		clk.advance(1050 * time.Microsecond)
		if sc := c.pick(t, &runtime.PickInfo{}); sc == scs[0] {
			slow++
		} else {
			c.done(sc, fast)
		}
	}
	if slow != 10 {
		t.Errorf("the slow endpoint got %d of 10000 picks over 10.5 s, want exactly 10 (one forced pick a second)", slow)
	}
	if f := b.Stats().Forced - forcedBefore; f != 10 {
		t.Errorf("Stats().Forced grew by %d over 10.5 s, want 10", f)
	}
	// Now it answers fast again: the forced picks' samples pull its
	// estimate down, and after about τ·ln(5 ms / 20 µs / 3) ≈ 45 s its
	// load (cost × 1) is below the others' (cost × 3).
	var back time.Duration
	start := clk.now()
	for range 100000 {
		clk.advance(1050 * time.Microsecond)
		f := b.Stats().Forced
		sc := c.pick(t, &runtime.PickInfo{})
		c.done(sc, fast)
		if sc == scs[0] && b.Stats().Forced == f {
			back = time.Duration(clk.now() - start)
			break
		}
	}
	if back == 0 {
		t.Fatal("the recovered endpoint was not picked unforced within 105 s")
	}
	t.Logf("5 ms spike against 20 µs: picked unforced again %v after it answered fast again (τ = %v)", back, DefaultDecay)
	// At the threshold it wins only just; 20 s later it is well below.
	counts := map[*runtime.SubConn]int{}
	for range 20000 {
		clk.advance(time.Millisecond)
		sc := c.pick(t, &runtime.PickInfo{})
		c.done(sc, fast)
		counts[sc]++
	}
	if counts[scs[0]] < 10000 {
		t.Errorf("recovered endpoint, the others with 2 calls in flight: picks%s over 20 s; want it preferred", share(counts, scs))
	}
}

// An endpoint without a sample is tried at once, but not again while its
// first call is pending (Finagle's penalty).
func TestP2CUnsampledEndpoint(t *testing.T) {
	clk, in := new(fakeClock), new(fakeInflight)
	c, scs, _ := setup(t, testP2C(t, clk, in, WithForcePick(0)), addrs(2)...)
	c.done(scs[0], runtime.AttemptResult{Answered: true, ServiceTime: 20 * time.Microsecond})
	in.add(scs[0], 3)
	for range 100 {
		if sc := c.pick(t, &runtime.PickInfo{}); sc != scs[1] {
			t.Fatalf("picked %v: an endpoint with no sample and nothing in flight must win", sc.Addr())
		}
	}
	in.add(scs[1], 1)
	for range 100 {
		if sc := c.pick(t, &runtime.PickInfo{}); sc != scs[0] {
			t.Fatalf("picked %v: an unsampled endpoint with its first call pending must lose", sc.Addr())
		}
	}
}

// A failed attempt doubles the cost at least, to 1 ms at least, or to the
// server's RETRY_AFTER.
func TestP2CFailureRaisesCost(t *testing.T) {
	clk := new(fakeClock)
	c, scs, _ := setup(t, testP2C(t, clk, nil), addrs(2)...)
	est := func() float64 {
		m := c.balancer.(*p2cBalancer).states.Load()
		return (*m)[scs[0]].read(clk.now(), float64(DefaultDecay))
	}
	c.done(scs[0], runtime.AttemptResult{Answered: true, ServiceTime: 20 * time.Microsecond})
	c.done(scs[0], runtime.AttemptResult{Err: runtime.ErrNoReply})
	if got := est(); got != float64(time.Millisecond) {
		t.Errorf("after a timeout: cost %v, want the 1 ms floor", time.Duration(got))
	}
	c.done(scs[0], runtime.AttemptResult{Err: runtime.ErrNoReply})
	if got := est(); got != float64(2*time.Millisecond) {
		t.Errorf("after a second timeout: cost %v, want it doubled (2ms)", time.Duration(got))
	}
	c.done(scs[0], runtime.AttemptResult{Answered: true, Status: proto.StatusOverloaded, RTT: 30 * time.Microsecond, RetryAfter: time.Second})
	if got := est(); got != float64(time.Second) {
		t.Errorf("after OVERLOADED with RETRY_AFTER 1s: cost %v, want 1s", time.Duration(got))
	}
}

func TestP2CAvoidsFailed(t *testing.T) {
	for _, b := range []runtime.BalancerBuilder{P2C(), RoundRobin()} {
		c, scs, _ := setup(t, b, addrs(2)...)
		for range 200 {
			if sc := c.pick(t, &runtime.PickInfo{Attempt: 1, Failed: scs[0]}); sc != scs[1] {
				t.Fatalf("%T: picked the endpoint the attempt failed on", b)
			}
		}
	}
}

// The estimate of an endpoint that stays survives an update.
func TestP2CKeepsEstimatesAcrossUpdates(t *testing.T) {
	clk := new(fakeClock)
	c, scs, _ := setup(t, testP2C(t, clk, nil), addrs(3)...)
	c.done(scs[1], runtime.AttemptResult{Answered: true, ServiceTime: 7 * time.Millisecond})
	c.balancer.UpdateState(runtime.BalancerState{SubConns: scs[1:]})
	m := c.balancer.(*p2cBalancer).states.Load()
	if len(*m) != 2 {
		t.Fatalf("%d states after an update to 2 endpoints", len(*m))
	}
	if got := (*m)[scs[1]].read(clk.now(), float64(DefaultDecay)); got != float64(7*time.Millisecond) {
		t.Errorf("estimate after the update: %v, want the 7ms it had", time.Duration(got))
	}
	// Done for the removed endpoint is ignored.
	c.done(scs[0], runtime.AttemptResult{Answered: true, ServiceTime: time.Millisecond})
}

func TestNewP2CNamesTheBadOption(t *testing.T) {
	if _, err := NewP2C(WithDecay(0)); err == nil || !contains(err.Error(), "WithDecay") {
		t.Errorf("WithDecay(0): %v", err)
	}
	if _, err := NewP2C(WithForcePick(-time.Second)); err == nil || !contains(err.Error(), "WithForcePick") {
		t.Errorf("WithForcePick(-1s): %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestPickAndDoneAllocateNothing(t *testing.T) {
	for _, b := range []runtime.BalancerBuilder{P2C(), RoundRobin()} {
		c, scs, _ := setup(t, b, addrs(16, func(i int, e *runtime.Endpoint) { e.Weight = uint32(1 + i%3) })...)
		p := c.picker.Load().p
		info := &runtime.PickInfo{}
		failed := &runtime.PickInfo{Attempt: 1, Failed: scs[3]}
		r := &runtime.AttemptResult{Answered: true, ServiceTime: 15 * time.Microsecond}
		bad := &runtime.AttemptResult{Err: runtime.ErrNoReply}
		i := 0
		if n := testing.AllocsPerRun(2000, func() {
			sc, _ := p.Pick(info)
			c.balancer.Done(sc, r)
			sc, _ = p.Pick(failed)
			if i++; i%10 == 0 {
				c.balancer.Done(sc, bad)
			}
		}); n != 0 {
			t.Errorf("%T: %v allocations per Pick+Done", b, n)
		}
	}
}
