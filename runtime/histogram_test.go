package runtime

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
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	s := h.snapshot()
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
	var empty Histogram
	if empty.Quantile(0.5) != 0 {
		t.Error("empty histogram has a quantile")
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	var h histogram
	for i := 0; i < b.N; i++ {
		h.record(time.Duration(i))
	}
}
