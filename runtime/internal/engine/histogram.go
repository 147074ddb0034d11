package engine

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

// Histogram is written with atomic adds (by one loop, or the workers of
// that loop) and read by snapshots from any goroutine.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	sumNs  atomic.Uint64
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

// Record adds one value.
func (h *Histogram) Record(d time.Duration) {
	ns, i := histValue(d)
	h.add(i, ns)
}

// recordBoth adds one value to a and b: a request's latency goes to its
// method's histogram and its loop's, and the bucket is found once.
func recordBoth(a, b *Histogram, d time.Duration) {
	ns, i := histValue(d)
	a.add(i, ns)
	b.add(i, ns)
}

// histValue is d as recorded (a negative one as 0) and its bucket.
func histValue(d time.Duration) (uint64, int) {
	ns := uint64(max(d, 0))
	return ns, histBucket(ns)
}

func (h *Histogram) add(bucket int, ns uint64) {
	h.counts[bucket].Add(1)
	h.sumNs.Add(ns)
}

// Snapshot copies the counts.
func (h *Histogram) Snapshot() HistogramSnapshot {
	var s HistogramSnapshot
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.total += c
	}
	s.sumNs = h.sumNs.Load()
	return s
}

// HistogramSnapshot is a copy of a Histogram's counts.
type HistogramSnapshot struct {
	counts [histBuckets]uint64
	total  uint64
	sumNs  uint64
}

// Merge adds o into h.
func (h *HistogramSnapshot) Merge(o *HistogramSnapshot) {
	for i := range h.counts {
		h.counts[i] += o.counts[i]
	}
	h.total += o.total
	h.sumNs += o.sumNs
}

// Count is the number of recorded values.
func (h *HistogramSnapshot) Count() uint64 { return h.total }

// Sum is the sum of the recorded values.
func (h *HistogramSnapshot) Sum() time.Duration { return time.Duration(h.sumNs) }

// Quantile returns the value below which the fraction q (0..1) of the
// recorded values fall, to within 12.5 %; zero when nothing was recorded.
func (h *HistogramSnapshot) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
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

// CountBelow returns how many recorded values are below d, exactly when d
// is a bucket boundary and otherwise counting the whole bucket d falls in
// as above it (so the result never overstates).
func (h *HistogramSnapshot) CountBelow(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	limit := histBucket(uint64(d)) // buckets below it end at or before d
	var n uint64
	for b := 0; b < limit; b++ {
		n += h.counts[b]
	}
	return n
}
