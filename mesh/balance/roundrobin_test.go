package balance

import (
	"testing"

	"github.com/zerohop/zerohop/runtime"
)

// Every cycle holds each endpoint exactly its weight's times, spread out:
// nginx's smooth round robin over weights 5, 1, 1 gives a a b a c a a.
func TestRoundRobinWeightsExactPerCycle(t *testing.T) {
	weights := []uint32{5, 1, 1}
	c, scs, _ := setup(t, RoundRobin(), addrs(3, func(i int, e *runtime.Endpoint) { e.Weight = weights[i] })...)
	sched := c.picker.Load().p.(*rrPicker).sched
	want := []int{0, 0, 1, 0, 2, 0, 0}
	if len(sched) != len(want) {
		t.Fatalf("cycle of %d picks, want %d", len(sched), len(want))
	}
	for i, k := range want {
		if sched[i] != scs[k] {
			var got []string
			for _, sc := range sched {
				got = append(got, sc.Addr().String())
			}
			t.Fatalf("cycle %v, want endpoints %v", got, want)
		}
	}
	counts := map[*runtime.SubConn]int{}
	for range 7 * 1000 {
		counts[c.pick(t, &runtime.PickInfo{})]++
	}
	for i, sc := range scs {
		if counts[sc] != int(weights[i])*1000 {
			t.Errorf("[%d] weight %d: %d picks of 7000, want %d", i, weights[i], counts[sc], weights[i]*1000)
		}
	}
}

// Weights with a common divisor make the same cycle as the reduced ones;
// huge weights are scaled to a bounded cycle that keeps their ratios.
func TestRoundRobinScheduleBounds(t *testing.T) {
	_, scs, _ := setup(t, RoundRobin(), addrs(3)...)
	withWeights := func(w ...uint32) map[*runtime.SubConn]int {
		eps := addrs(3, func(i int, e *runtime.Endpoint) { e.Weight = w[i] })
		c, s, _ := setup(t, RoundRobin(), eps...)
		scs = s
		counts := map[*runtime.SubConn]int{}
		for _, sc := range c.picker.Load().p.(*rrPicker).sched {
			counts[sc]++
		}
		return counts
	}
	if got := withWeights(300, 200, 100); got[scs[0]] != 3 || got[scs[1]] != 2 || got[scs[2]] != 1 {
		t.Errorf("weights 300,200,100: cycle%s, want 3,2,1", share(got, scs))
	}
	got := withWeights(4_000_000_000, 2_000_000_000, 1)
	total := got[scs[0]] + got[scs[1]] + got[scs[2]]
	if total > maxSchedule+3 || got[scs[2]] != 1 || got[scs[0]] < 2*got[scs[1]]-2 || got[scs[0]] > 2*got[scs[1]]+2 {
		t.Errorf("weights 4e9,2e9,1: cycle of %d%s, want ≤ %d with 2:1 kept and the last once", total, share(got, scs), maxSchedule)
	}
}

func TestRoundRobinEvenSpread(t *testing.T) {
	c, scs, _ := setup(t, RoundRobin(), addrs(3)...)
	counts := map[*runtime.SubConn]int{}
	for range 3000 {
		counts[c.pick(t, &runtime.PickInfo{})]++
	}
	for _, sc := range scs {
		if counts[sc] != 1000 {
			t.Errorf("picks%s, want 1000 each", share(counts, scs))
			break
		}
	}
}
