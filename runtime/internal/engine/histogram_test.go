package engine

import (
	"testing"
	"time"
)

func TestHistogramBucketsAreMonotonicAndTight(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 12345, 1 << 20, 1<<40 + 12345, 1<<63 - 1} {
		b := histBucket(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucket(%d) = %d after %d", v, b, prev)
		}
		prev = b
		low := histBucketLow(b)
		if low > v {
			t.Fatalf("bucket(%d) low bound %d above the value", v, low)
		}
		if v >= histSub && float64(v-low) > float64(v)/histSub {
			t.Fatalf("bucket(%d) low bound %d more than 1/%d below", v, low, histSub)
		}
		if histBucket(low) != b {
			t.Fatalf("low bound %d of bucket %d maps to bucket %d", low, b, histBucket(low))
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	s := h.Snapshot()
	if s.Count() != 1000 {
		t.Fatalf("count = %d", s.Count())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0, time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := s.Quantile(c.q)
		if got > c.want || float64(c.want-got) > float64(c.want)/histSub {
			t.Errorf("Quantile(%v) = %v, want within 12.5%% below %v", c.q, got, c.want)
		}
	}
	var empty HistogramSnapshot
	if empty.Quantile(0.5) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	var h Histogram
	for i := 0; i < b.N; i++ {
		h.Record(time.Duration(i))
	}
}

func TestHistogramCountBelow(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{5, 100, 1000, 10_000, 100_000} {
		h.Record(d * time.Nanosecond)
	}
	s := h.Snapshot()
	for _, c := range []struct {
		below time.Duration
		want  uint64
	}{{0, 0}, {5, 0}, {6, 1}, {1000, 2}, {1 << 20, 5}} {
		if got := s.CountBelow(c.below); got != c.want {
			t.Errorf("CountBelow(%v) = %d, want %d", c.below, got, c.want)
		}
	}
	if s.Sum() != 111_105 {
		t.Errorf("Sum = %v", s.Sum())
	}
}
