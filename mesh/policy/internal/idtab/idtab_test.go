package idtab

import (
	"math/rand/v2"
	"testing"
)

func TestTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 100, 1000} {
		seen := map[uint32]bool{0: true}
		ids := make([]uint32, 0, n)
		for len(ids) < n {
			id := r.Uint32()
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		tab, err := New(ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if v, ok := tab.Get(id); !ok || v != int32(i) {
				t.Fatalf("n=%d: Get(%#x) = %d, %v; want %d", n, id, v, ok, i)
			}
		}
		for range 1000 {
			id := r.Uint32()
			if _, ok := tab.Get(id); ok != seen[id] && id != 0 {
				t.Fatalf("n=%d: Get(%#x) found=%v", n, id, ok)
			}
		}
		if _, ok := tab.Get(0); ok {
			t.Fatal("Get(0) found something")
		}
	}
	if _, err := New([]uint32{5, 5}); err == nil {
		t.Fatal("duplicate ids accepted")
	}
	if _, err := New([]uint32{0}); err == nil {
		t.Fatal("id 0 accepted")
	}
	var nilTab *Table
	if _, ok := nilTab.Get(1); ok {
		t.Fatal("nil table found something")
	}
}

func BenchmarkGet(b *testing.B) {
	ids := make([]uint32, 64)
	for i := range ids {
		ids[i] = uint32(i+1) * 2654435761
	}
	tab, _ := New(ids)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := tab.Get(ids[i&63]); !ok {
			b.Fatal("missing")
		}
		i++
	}
}
