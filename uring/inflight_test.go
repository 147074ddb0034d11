package uring

import (
	"math/rand/v2"
	"testing"
)

// The table against a plain map model: random adds (with shared user data,
// skip-success and buffer groups) and last-CQE retirements over a small key
// space, so probe runs collide, wrap and get deleted from the middle.
func TestInflightAgainstModel(t *testing.T) {
	type model struct {
		pending int
		pinned  bool
		refs    map[any]bool
		groups  map[int32]bool
	}
	rng := rand.New(rand.NewPCG(1, 2))
	tab := newInflight(4)
	want := map[uint64]*model{}
	bufs := make([]*[64]byte, 8)
	for i := range bufs {
		bufs[i] = new([64]byte)
	}
	for step := range 200000 {
		// Keys clustered so they share home slots.
		u := uint64(rng.IntN(40)) << (rng.IntN(2) * 40)
		if rng.IntN(2) == 0 {
			var ref any
			if b := rng.IntN(len(bufs) + 1); b < len(bufs) {
				ref = &bufs[b][0]
			}
			group := int32(rng.IntN(3)) - 1
			skip := rng.IntN(20) == 0
			if ref == nil && group < 0 {
				continue // flush records only operations holding something
			}
			tab.add(u, ref, group, skip)
			m := want[u]
			if m == nil {
				m = &model{refs: map[any]bool{}, groups: map[int32]bool{}}
				want[u] = m
			}
			if skip {
				m.pinned = true
			} else {
				m.pending++
			}
			m.refs[ref] = true
			m.groups[group] = true
		} else {
			tab.retire(u)
			if m := want[u]; m != nil {
				if m.pending > 0 {
					m.pending--
				}
				if m.pending == 0 && !m.pinned {
					delete(want, u)
				}
			}
		}
		if step%997 != 0 {
			continue
		}
		pending := 0
		for u, m := range want {
			pending += m.pending
			for ref := range m.refs {
				if ref != nil && !tab.holds(u, ref) {
					t.Fatalf("step %d: key %#x lost a reference", step, u)
				}
			}
		}
		if tab.live != len(want) || tab.pending != pending {
			t.Fatalf("step %d: live %d pending %d, model %d %d", step, tab.live, tab.pending, len(want), pending)
		}
		for g := int32(0); g < 2; g++ {
			inModel := false
			for _, m := range want {
				inModel = inModel || m.groups[g]
			}
			if tab.usesGroup(uint16(g)) != inModel {
				t.Fatalf("step %d: usesGroup(%d) = %v, model %v", step, g, !inModel, inModel)
			}
		}
		for n := range uint64(40) {
			for _, u := range []uint64{n, n << 40} {
				_, ki := tab.find(u)
				if _, ok := want[u]; ok != (ki >= 0) {
					t.Fatalf("step %d: key %#x in table %v, in model %v", step, u, ki >= 0, ok)
				}
			}
		}
	}
	if len(tab.slots) > 256 {
		t.Fatalf("index grew to %d slots for at most 80 keys", len(tab.slots))
	}
}

func TestInflightRetireDoesNotAllocate(t *testing.T) {
	tab := newInflight(64)
	buf := new([64]byte)
	// Warm up to the high-water mark, then add and retire in a cycle.
	for u := range uint64(64) {
		tab.add(u, &buf[0], -1, false)
	}
	for u := range uint64(64) {
		tab.retire(u)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for u := range uint64(64) {
			tab.add(u<<20, &buf[0], 3, false)
		}
		for u := range uint64(64) {
			tab.retire(u << 20)
		}
	})
	if allocs != 0 || tab.live != 0 || tab.pending != 0 {
		t.Fatalf("allocs %v, live %d, pending %d; want 0, 0, 0", allocs, tab.live, tab.pending)
	}
}
