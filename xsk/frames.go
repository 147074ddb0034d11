package xsk

import (
	"errors"
	"fmt"
)

// frameState says where a frame of a socket's range is. Every frame is in
// exactly one state; each transition checks the state it leaves.
type frameState uint8

const (
	// stateFree: on the socket's free stack.
	stateFree frameState = iota
	// stateFill: given to the kernel for RX (in the fill ring, in the
	// kernel's hands, or in the RX ring not yet taken by Receive).
	stateFill
	// stateUser: owned by the caller (from Receive or Alloc).
	stateUser
	// stateTX: given to the kernel for TX (in the TX ring, being sent, or
	// in the completion ring not yet reaped).
	stateTX
	stateCount
)

var stateNames = [stateCount]string{"free", "fill", "user", "tx"}

// Desc describes one packet in the UMEM: Addr is the offset of its first
// byte in the UMEM, Len its length. A Desc from Receive can be passed to
// Transmit unchanged or with a new Addr/Len inside the same frame, so a
// reply is built in place without copying.
type Desc struct {
	Addr uint64
	Len  uint32
}

// frameIndex maps an address to the index of its frame in our range, or
// -1 when it lies outside the range.
func (s *Socket) frameIndex(addr uint64) int {
	i := int(addr/s.umem.frameSize) - s.frames.first
	if i < 0 || i >= s.frames.count {
		return -1
	}
	return i
}

// move changes a frame's state if it is in state from, and counts a
// violation otherwise (an address the kernel or the caller should not have
// handed us); the frame is then left where it was.
func (s *Socket) move(i int, from, to frameState) bool {
	if i < 0 || s.state[i] != from {
		s.counters.AccountingViolations++
		return false
	}
	s.state[i] = to
	s.counts[from]--
	s.counts[to]++
	return true
}

// Refill moves up to max frames from the free stack to the fill ring, as
// many as the ring has room for, and returns how many it moved. If
// FillNeedsWakeup reports true afterwards, wake the kernel with WakeFill or
// by polling FD.
func (s *Socket) Refill(max int) int {
	n := min(max, len(s.free))
	if n <= 0 {
		return 0
	}
	index, count := s.fill.reserve(uint32(n))
	for k := uint32(0); k < count; k++ {
		addr := s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
		s.move(s.frameIndex(addr), stateFree, stateFill)
		s.fill.set(index+k, addr)
	}
	s.fill.submit()
	s.counters.Filled += uint64(count)
	return int(count)
}

// Receive takes up to len(descs) received packets off the RX ring and
// returns how many it wrote to descs. Their frames belong to the caller
// until it passes them to Transmit or Release; Packet and Frame give their
// bytes.
func (s *Socket) Receive(descs []Desc) int {
	index, count := s.rx.peek(uint32(len(descs)))
	n := 0
	for k := uint32(0); k < count; k++ {
		d := s.rx.get(index + k)
		if !s.move(s.frameIndex(d.Addr), stateFill, stateUser) {
			continue
		}
		descs[n] = Desc{Addr: d.Addr, Len: d.Len}
		n++
	}
	if count > 0 {
		s.rx.release()
	}
	s.counters.RXPackets += uint64(n)
	return n
}

// RXReady reports whether the RX ring holds packets Receive has not taken,
// reading the kernel's producer index fresh. Check it before sleeping so
// no packet is stranded behind an edge-triggered wakeup.
func (s *Socket) RXReady() bool { return s.rx.ready() }

// Alloc takes a free frame for the caller to build a packet in, or returns
// false when none is free (reap completions or release frames first). The
// address is the start of the frame; the whole frame is usable.
func (s *Socket) Alloc() (addr uint64, ok bool) {
	if len(s.free) == 0 {
		return 0, false
	}
	addr = s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	s.move(s.frameIndex(addr), stateFree, stateUser)
	return addr, true
}

// Release gives a frame the caller owns back to the free stack. The
// address may point anywhere inside the frame. Releasing a frame the
// caller does not own is counted (Counters.AccountingViolations) and
// ignored.
func (s *Socket) Release(addr uint64) {
	i := s.frameIndex(addr)
	if !s.move(i, stateUser, stateFree) {
		return
	}
	s.free = append(s.free, uint64(s.frames.first+i)*s.umem.frameSize)
}

// Transmit posts descs to the TX ring and returns how many it consumed
// from the front of descs; descs[n:] stay the caller's (the ring was full).
// A descriptor that does not fit inside its frame is not sent: its frame
// goes back to the free stack (Counters.TXRejected), because the kernel
// would skip it without ever completing the frame. A descriptor whose
// frame the caller does not own is skipped and counted as an accounting
// violation. The kernel only sends after a kick: see TXNeedsWakeup and
// Kick.
func (s *Socket) Transmit(descs []Desc) int {
	if len(descs) == 0 {
		return 0
	}
	index, slots := s.tx.reserve(uint32(len(descs)))
	used := uint32(0)
	n := 0
	for ; n < len(descs) && used < slots; n++ {
		d := descs[n]
		i := s.frameIndex(d.Addr)
		if i < 0 || s.state[i] != stateUser {
			s.counters.AccountingViolations++
			continue
		}
		if d.Len == 0 || d.Addr%s.umem.frameSize+uint64(d.Len) > s.umem.frameSize {
			s.counters.TXRejected++
			s.Release(d.Addr)
			continue
		}
		s.move(i, stateUser, stateTX)
		s.tx.set(index+used, d.Addr, d.Len)
		used++
	}
	s.tx.unreserve(slots - used)
	if used > 0 {
		s.tx.submit()
	}
	s.counters.TXPackets += uint64(used)
	return n
}

// TXPending is the number of descriptors in the TX ring the kernel has not
// taken yet; a loop kicks until it reaches zero.
func (s *Socket) TXPending() int { return int(s.tx.pending()) }

// ReapCompletions moves the frames the kernel finished sending from the
// completion ring to the free stack and returns how many.
func (s *Socket) ReapCompletions() int {
	index, count := s.comp.peek(s.comp.size)
	for k := uint32(0); k < count; k++ {
		addr := s.comp.get(index + k)
		i := s.frameIndex(addr)
		if s.move(i, stateTX, stateFree) {
			s.free = append(s.free, uint64(s.frames.first+i)*s.umem.frameSize)
			s.counters.Completed++
		}
	}
	if count > 0 {
		s.comp.release()
	}
	return int(count)
}

// Free is the number of frames on the free stack.
func (s *Socket) Free() int { return len(s.free) }

// Frame returns the bytes from addr to the end of its frame, aliasing the
// UMEM; valid while the caller owns the frame and the socket is open.
func (s *Socket) Frame(addr uint64) []byte { return s.umem.Frame(addr) }

// Packet returns the bytes a descriptor covers, aliasing the UMEM; valid
// while the caller owns the frame and the socket is open.
func (s *Socket) Packet(d Desc) []byte { return s.umem.Frame(d.Addr)[:d.Len] }

// Accounting counts a socket's frames by where they are. Every frame is in
// exactly one place, so the fields add up to Total.
type Accounting struct {
	Total int
	// Free frames are on the socket's free stack.
	Free int
	// Fill frames are in the fill ring or held by the kernel for RX.
	Fill int
	// RX frames hold received packets not yet taken by Receive.
	RX int
	// User frames belong to the caller (Receive, Alloc).
	User int
	// TX frames are in the TX ring or being sent.
	TX int
	// Completion frames were sent and wait in the completion ring.
	Completion int
}

// Accounting counts the socket's frames by place.
func (s *Socket) Accounting() Accounting {
	rx := int(s.rx.readyEntriesFresh())
	comp := int(s.comp.readyEntriesFresh())
	return Accounting{
		Total:      s.frames.count,
		Free:       s.counts[stateFree],
		Fill:       s.counts[stateFill] - rx,
		RX:         rx,
		User:       s.counts[stateUser],
		TX:         s.counts[stateTX] - comp,
		Completion: comp,
	}
}

// CheckAccounting verifies that every frame of the socket is in exactly
// one place: the per-frame states, the per-state counts, the free stack
// and the ring indices agree, and no operation handed over a frame from
// the wrong place. It walks all frames (O(frames)); for tests and debug.
func (s *Socket) CheckAccounting() error {
	if s.closed {
		return ErrClosed
	}
	var errs []error
	var counted [stateCount]int
	for _, st := range s.state {
		if st >= stateCount {
			return fmt.Errorf("xsk: accounting: frame state %d out of range", st)
		}
		counted[st]++
	}
	for st := range stateCount {
		if counted[st] != s.counts[st] {
			errs = append(errs, fmt.Errorf("%d frames in state %s, counter says %d", counted[st], stateNames[st], s.counts[st]))
		}
	}
	if len(s.free) != counted[stateFree] {
		errs = append(errs, fmt.Errorf("free stack holds %d frames, %d frames are free", len(s.free), counted[stateFree]))
	}
	seen := make([]bool, s.frames.count)
	for _, addr := range s.free {
		i := s.frameIndex(addr)
		switch {
		case i < 0 || addr%s.umem.frameSize != 0:
			errs = append(errs, fmt.Errorf("free stack holds address %#x outside the socket's frames", addr))
		case seen[i]:
			errs = append(errs, fmt.Errorf("free stack holds frame %#x twice", addr))
		case s.state[i] != stateFree:
			errs = append(errs, fmt.Errorf("free stack holds frame %#x in state %s", addr, stateNames[s.state[i]]))
		default:
			seen[i] = true
		}
	}
	if inFill := s.counters.Filled - s.counters.RXPackets; uint64(counted[stateFill]) != inFill {
		errs = append(errs, fmt.Errorf("%d frames in state fill, but %d filled - %d received = %d", counted[stateFill], s.counters.Filled, s.counters.RXPackets, inFill))
	}
	if inTX := s.counters.TXPackets - s.counters.Completed; uint64(counted[stateTX]) != inTX {
		errs = append(errs, fmt.Errorf("%d frames in state tx, but %d sent - %d completed = %d", counted[stateTX], s.counters.TXPackets, s.counters.Completed, inTX))
	}
	if rx := int(s.rx.readyEntriesFresh()); rx > counted[stateFill] {
		errs = append(errs, fmt.Errorf("RX ring holds %d entries, only %d frames were given to the kernel", rx, counted[stateFill]))
	}
	if comp := int(s.comp.readyEntriesFresh()); comp > counted[stateTX] {
		errs = append(errs, fmt.Errorf("completion ring holds %d entries, only %d frames were sent", comp, counted[stateTX]))
	}
	if v := s.counters.AccountingViolations; v != 0 {
		errs = append(errs, fmt.Errorf("%d frames were handed over from the wrong place", v))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xsk: accounting of queue %d: %w", s.queue, err)
	}
	return nil
}
