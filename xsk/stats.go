package xsk

import "fmt"

// Statistics are the kernel's counters for one socket (XDP_STATISTICS).
type Statistics struct {
	// RXDropped: packets dropped for any reason other than the ones below
	// (in copy mode also when no fill frame was available).
	RXDropped uint64
	// RXInvalidDescs: fill ring entries the kernel rejected.
	RXInvalidDescs uint64
	// TXInvalidDescs: TX descriptors the kernel rejected and skipped.
	TXInvalidDescs uint64
	// RXRingFull: packets dropped because the RX ring was full.
	RXRingFull uint64
	// RXFillRingEmptyDescs: times the kernel found the fill ring empty.
	RXFillRingEmptyDescs uint64
	// TXRingEmptyDescs: kicks that found the TX ring empty.
	TXRingEmptyDescs uint64
}

// Statistics reads the kernel's counters for the socket.
func (s *Socket) Statistics() (Statistics, error) {
	if s.closed {
		return Statistics{}, fmt.Errorf("xsk: statistics of queue %d: %w", s.queue, ErrClosed)
	}
	st, err := getsockoptStatistics(s.fd)
	if err != nil {
		return Statistics{}, fmt.Errorf("xsk: statistics of queue %d: getsockopt XDP_STATISTICS: %w", s.queue, err)
	}
	return Statistics{
		RXDropped:            st.Rx_dropped,
		RXInvalidDescs:       st.Rx_invalid_descs,
		TXInvalidDescs:       st.Tx_invalid_descs,
		RXRingFull:           st.Rx_ring_full,
		RXFillRingEmptyDescs: st.Rx_fill_ring_empty_descs,
		TXRingEmptyDescs:     st.Tx_ring_empty_descs,
	}, nil
}

// Counters are the socket's own counts, kept without atomics: read them
// from the goroutine that drives the socket.
type Counters struct {
	// Filled, RXPackets, TXPackets and Completed count frames moved to
	// the fill ring, taken from the RX ring, posted to the TX ring and
	// reaped from the completion ring.
	Filled, RXPackets, TXPackets, Completed uint64
	// Kicks counts TX wakeup syscalls; KickTryLater those (and fill
	// wakeups) answered with EAGAIN, EBUSY, ENOBUFS or ENETDOWN;
	// KickErrors those that failed otherwise.
	Kicks, KickTryLater, KickErrors uint64
	// TXRejected counts descriptors Transmit refused because they did
	// not fit their frame (their frames went back to the free stack).
	TXRejected uint64
	// AccountingViolations counts frames handed over from the wrong place
	// (a double Release, a Transmit of a frame not owned, an address from
	// the kernel that was not ours). CheckAccounting fails while it is
	// non-zero.
	AccountingViolations uint64
	// BindBusyRetries counts binds retried on EBUSY while the queue's
	// previous socket was being released.
	BindBusyRetries uint64
}

// Counters returns the socket's own counts.
func (s *Socket) Counters() Counters { return s.counters }
