package idtab

import "fmt"

// Table maps ids to values. Build it with New; the zero Table is empty.
type Table struct {
	keys  []uint32 // 0 marks an empty slot: 0 is PING's id, never a method's
	vals  []int32
	shift uint32
}

// New builds a table from ids to their index in ids. Ids must be non-zero
// and distinct.
func New(ids []uint32) (*Table, error) {
	bits := uint32(1)
	for 1<<bits < 2*len(ids) {
		bits++
	}
	t := &Table{keys: make([]uint32, 1<<bits), vals: make([]int32, 1<<bits), shift: 32 - bits}
	for i, id := range ids {
		if id == 0 {
			return nil, fmt.Errorf("method id 0 (reserved for PING) at index %d", i)
		}
		if _, ok := t.Get(id); ok {
			return nil, fmt.Errorf("method id %#x appears twice", id)
		}
		s := t.slot(id)
		for t.keys[s] != 0 {
			s = (s + 1) & uint32(len(t.keys)-1)
		}
		t.keys[s], t.vals[s] = id, int32(i)
	}
	return t, nil
}

// slot is Fibonacci hashing: FNV-1a ids are already mixed, the multiply
// guards against ids chosen to collide in the low bits.
func (t *Table) slot(id uint32) uint32 { return (id * 2654435769) >> t.shift }

// Get returns the value stored for id.
func (t *Table) Get(id uint32) (int32, bool) {
	if t == nil || len(t.keys) == 0 || id == 0 {
		return -1, false
	}
	mask := uint32(len(t.keys) - 1)
	for s := t.slot(id); ; s = (s + 1) & mask {
		switch t.keys[s] {
		case id:
			return t.vals[s], true
		case 0:
			return -1, false
		}
	}
}
