package shed

import (
	"math"
	"testing"
	"time"
)

// Completions reported in a batch (from workers, through the loop) leave
// the shedder where the same completions one by one leave it: the same
// window, in-flight count and averages.
func TestDoneBatchEqualsDones(t *testing.T) {
	one, err := New(Config{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := New(Config{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, b := one.Loop(0), batch.Loop(0)
	now := int64(time.Hour)
	const rt, wait = 1100 * time.Microsecond, 300 * time.Microsecond
	for round := range 30 {
		n := int64(round%7 + 1)
		for range n + 2 {
			a.Allow(now, 0)
			b.Allow(now, 0)
		}
		for range n {
			a.Done(now, rt, wait)
		}
		b.DoneBatch(now, n, time.Duration(n)*rt, time.Duration(n)*wait)
		a.Release(now)
		a.Release(now)
		b.ReleaseBatch(now, 2)
		now += int64(37 * time.Millisecond) // crosses buckets now and then
	}
	sa, sb := a.State(), b.State()
	if sa.Flying != sb.Flying || sa.MaxFlight != sb.MaxFlight || sa.MinRT != sb.MinRT ||
		math.Abs(sa.AvgFlying-sb.AvgFlying) > 1e-9 || sa.AvgWait != sb.AvgWait {
		t.Fatalf("one by one %+v, batched %+v", sa, sb)
	}
	if sa.Flying != 0 || sa.MinRT != rt {
		t.Fatalf("state %+v: want nothing in flight and minRT %v", sa, rt)
	}
	b.DoneBatch(now, 0, time.Second, time.Second) // nothing to report
	if b.State() != sb {
		t.Fatal("an empty batch changed the state")
	}
}
