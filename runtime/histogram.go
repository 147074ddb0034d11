package runtime

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latency histograms are log-linear: each power of two of nanoseconds is split
// into histSub linear sub-buckets, so any recorded value is reported within
// 1/histSub (12.5 %) of itself, from 1 ns to ~68 s, in a fixed array that
// recording never allocates or locks.
const (
	histSubBits = 3
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits) * histSub
)

// histogram is written by one loop (atomic adds) and read by Stats callers.
type histogram struct {
	counts [histBuckets]atomic.Uint64
}

func histBucket(ns uint64) int {
	if ns < histSub {
		return int(ns)
	}
	exp := bits.Len64(ns) - 1 // ≥ histSubBits
	sub := (ns >> (uint(exp) - histSubBits)) & (histSub - 1)
	return (exp-histSubBits+1)*histSub + int(sub)
}

// histBucketLow is the smallest value that falls into bucket b.
func histBucketLow(b int) uint64 {
	if b < histSub {
		return uint64(b)
	}
	exp := b/histSub + histSubBits - 1
	sub := uint64(b % histSub)
	return (1 << uint(exp)) | sub<<(uint(exp)-histSubBits)
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histBucket(uint64(d))].Add(1)
}

// Histogram is a snapshot of a latency histogram.
type Histogram struct {
	counts [histBuckets]uint64
	total  uint64
}

func (h *histogram) snapshot() Histogram {
	var s Histogram
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.total += c
	}
	return s
}

// merge adds o into h.
func (h *Histogram) merge(o *Histogram) {
	for i := range h.counts {
		h.counts[i] += o.counts[i]
	}
	h.total += o.total
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Quantile returns the value below which the fraction q (0..1) of the
// recorded values fall, to within 12.5 %; zero when nothing was recorded.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if q < 0 {
		q = 0
	}
	if q > 1 {
		q = 1
	}
	rank := uint64(q*float64(h.total-1)) + 1
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(histBucketLow(b))
		}
	}
	return time.Duration(histBucketLow(histBuckets - 1))
}
