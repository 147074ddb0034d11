package uring

// inflight remembers, for every operation the kernel was handed that points
// at memory (a buffer, msghdr or sockaddr it keeps reachable, or a
// provided-buffer group), that memory until the operation's last CQE: the
// first CQE without IORING_CQE_F_MORE carrying its user data.
//
// The table is keyed by user data because that is all a CQE names; the
// ring never rewrites user data, so cancellation by user data and MSG_RING
// keep working. Several operations may share user data (a retransmitted
// send, repeated TX kicks): a key counts its pending operations and holds
// the union of their memory until the count reaches zero, which is late
// for some of them but never early.
//
// An operation given SQECQESkipSuccess posts no CQE when it succeeds, so
// nothing tells when the kernel is done with its memory: its key is pinned
// and keeps that memory until Close, which cancels synchronously on the
// owning thread before letting go. Memory is deduplicated per key, so an
// operation repeated with the same memory and user data holds one entry.
//
// Inserting may grow the slices (at the high-water mark only); retiring
// never allocates, so Reap stays allocation-free.
type inflight struct {
	// slots is an open-addressing index over user data (linear probing,
	// deletion by backward shift): key index + 1, 0 for an empty slot.
	slots []int32
	shift uint8 // 64 - log2(len(slots))

	keys    []opKey
	freeKey int32 // free list through opKey.next, -1 when empty
	refs    []opRef
	freeRef int32 // free list through opRef.next, -1 when empty

	live    int // keys in use
	pending int // operations, not pinned, awaiting their last CQE
}

type opKey struct {
	userData uint64
	pending  uint32 // operations of this key awaiting their last CQE
	pinned   bool   // a skip-success operation holds memory: keep until Close
	head     int32  // first opRef, -1 for none
	next     int32  // next free key while on the free list
}

type opRef struct {
	ref   any   // the pointer kept reachable, or nil
	group int32 // provided-buffer group the operation picks from, or -1
	next  int32
}

func newInflight(capacity uint32) inflight {
	n := uint32(16)
	for n < 2*capacity {
		n <<= 1
	}
	t := inflight{
		slots:   make([]int32, n),
		keys:    make([]opKey, 0, capacity),
		refs:    make([]opRef, 0, capacity),
		freeKey: -1,
		freeRef: -1,
	}
	t.shift = uint8(64 - log2(n))
	return t
}

func log2(n uint32) uint {
	var l uint
	for n > 1 {
		n >>= 1
		l++
	}
	return l
}

// home is the preferred slot of user data u (Fibonacci hashing).
func (t *inflight) home(u uint64) uint32 {
	return uint32((u * 0x9e3779b97f4a7c15) >> t.shift)
}

func (t *inflight) find(u uint64) (slot uint32, key int32) {
	mask := uint32(len(t.slots) - 1)
	for i := t.home(u); ; i = (i + 1) & mask {
		k := t.slots[i]
		if k == 0 {
			return i, -1
		}
		if t.keys[k-1].userData == u {
			return i, k - 1
		}
	}
}

// add records one operation with user data u holding ref (nil for none)
// and picking buffers from group (-1 for none); skip marks an operation
// that posts no CQE on success.
func (t *inflight) add(u uint64, ref any, group int32, skip bool) {
	slot, ki := t.find(u)
	if ki < 0 {
		if 2*(t.live+1) > len(t.slots) {
			t.grow()
			slot, _ = t.find(u)
		}
		ki = t.newKey(u)
		t.slots[slot] = ki + 1
		t.live++
	}
	k := &t.keys[ki]
	if skip {
		k.pinned = true
	} else {
		k.pending++
		t.pending++
	}
	for ri := k.head; ri >= 0; ri = t.refs[ri].next {
		if r := &t.refs[ri]; r.ref == ref && r.group == group {
			return
		}
	}
	ri := t.newRef()
	t.refs[ri] = opRef{ref: ref, group: group, next: t.keys[ki].head}
	t.keys[ki].head = ri
}

// retire handles the last CQE of an operation with user data u.
func (t *inflight) retire(u uint64) {
	slot, ki := t.find(u)
	if ki < 0 {
		return
	}
	k := &t.keys[ki]
	if k.pending > 0 {
		k.pending--
		t.pending--
	}
	if k.pending > 0 || k.pinned {
		return
	}
	for ri := k.head; ri >= 0; {
		next := t.refs[ri].next
		t.refs[ri] = opRef{next: t.freeRef}
		t.freeRef = ri
		ri = next
	}
	*k = opKey{next: t.freeKey}
	t.freeKey = ki
	t.live--
	t.deleteSlot(slot)
}

// deleteSlot empties slot and shifts later entries of its probe run back,
// so lookups never stop early at a hole.
func (t *inflight) deleteSlot(hole uint32) {
	mask := uint32(len(t.slots) - 1)
	for i := (hole + 1) & mask; t.slots[i] != 0; i = (i + 1) & mask {
		h := t.home(t.keys[t.slots[i]-1].userData)
		// Move i into the hole unless its home lies cyclically in
		// (hole, i], where a lookup from home reaches i without the hole.
		if (i-h)&mask >= (i-hole)&mask {
			t.slots[hole] = t.slots[i]
			hole = i
		}
	}
	t.slots[hole] = 0
}

func (t *inflight) grow() {
	old := t.slots
	t.slots = make([]int32, 2*len(old))
	t.shift--
	for _, k := range old {
		if k != 0 {
			slot, _ := t.find(t.keys[k-1].userData)
			t.slots[slot] = k
		}
	}
}

func (t *inflight) newKey(u uint64) int32 {
	if ki := t.freeKey; ki >= 0 {
		t.freeKey = t.keys[ki].next
		t.keys[ki] = opKey{userData: u, head: -1}
		return ki
	}
	t.keys = append(t.keys, opKey{userData: u, head: -1})
	return int32(len(t.keys) - 1)
}

func (t *inflight) newRef() int32 {
	if ri := t.freeRef; ri >= 0 {
		t.freeRef = t.refs[ri].next
		return ri
	}
	t.refs = append(t.refs, opRef{})
	return int32(len(t.refs) - 1)
}

// usesGroup reports whether an operation that picks buffers from group
// may still be running.
func (t *inflight) usesGroup(group uint16) bool {
	for _, k := range t.slots {
		if k == 0 {
			continue
		}
		for ri := t.keys[k-1].head; ri >= 0; ri = t.refs[ri].next {
			if t.refs[ri].group == int32(group) {
				return true
			}
		}
	}
	return false
}

// holds reports whether ref is kept for an operation with user data u.
func (t *inflight) holds(u uint64, ref any) bool {
	_, ki := t.find(u)
	if ki < 0 {
		return false
	}
	for ri := t.keys[ki].head; ri >= 0; ri = t.refs[ri].next {
		if t.refs[ri].ref == ref {
			return true
		}
	}
	return false
}

// reset forgets everything, once the kernel can no longer touch the memory.
func (t *inflight) reset() {
	clear(t.slots)
	clear(t.refs)
	t.keys, t.refs = t.keys[:0], t.refs[:0]
	t.freeKey, t.freeRef = -1, -1
	t.live, t.pending = 0, 0
}
