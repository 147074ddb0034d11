package breaker

import (
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// backend answers like an endpoint that can take capacity calls per second
// (0: none) and refuses the rest with OVERLOADED.
// Its capacity is a token bucket 20 calls deep, so calls arriving at random
// do not waste it.
type backend struct {
	capacity float64
	tat      int64
}

func (s *backend) call(now int64) Outcome {
	if s.capacity <= 0 {
		return Classify(proto.StatusOverloaded, true)
	}
	interval := int64(1e9 / s.capacity)
	base := max(s.tat, now-20*interval)
	if now-base < interval {
		return Classify(proto.StatusOverloaded, true)
	}
	s.tat = base + interval
	return Classify(proto.StatusOK, true)
}

// run offers calls every step from start to end and returns how many were
// sent in each 250 ms bucket.
func run(b *Breaker, s *backend, start, end, step int64) (sent []int, offered int, dropped int) {
	sent = make([]int, (end-start+int64(Bucket)-1)/int64(Bucket))
	for now := start; now < end; now += step {
		offered++
		if err := b.Allow(now); err != nil {
			if !errors.Is(err, ErrBreakerOpen) {
				panic(err)
			}
			dropped++
			continue
		}
		sent[(now-start)/int64(Bucket)]++
		b.Mark(now, s.call(now))
	}
	return sent, offered, dropped
}

func seeded(seed uint64) Options {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return Options{Rand: r.Uint64}
}

// An endpoint that takes C of N offered calls/s: the drop fraction settles
// at the SRE formula's fixed point 1 − K·C/N and the endpoint keeps
// receiving K·C calls/s.
func TestDropFractionConvergesToSREFormula(t *testing.T) {
	const offered = 1000
	step := int64(time.Second) / offered
	for _, capacity := range []float64{100, 200, 500} {
		b := New(seeded(uint64(capacity)))
		s := &backend{capacity: capacity}
		origin := int64(time.Hour)
		run(b, s, origin, origin+int64(20*time.Second), step) // settle
		sent, n, dropped := run(b, s, origin+int64(20*time.Second), origin+int64(40*time.Second), step)
		want := 1 - K*capacity/offered
		got := float64(dropped) / float64(n)
		if math.Abs(got-want) > 0.02 {
			t.Errorf("capacity %v/s: dropped %.3f of calls, want 1 − K·C/N = %.3f ± 0.02", capacity, got, want)
		}
		total := 0
		for _, c := range sent {
			total += c
		}
		rate := float64(total) / 20
		if math.Abs(rate-K*capacity) > 0.05*K*capacity {
			t.Errorf("capacity %v/s: sent %.1f calls/s, want K·C = %.1f ± 5 %%", capacity, rate, K*capacity)
		}
		// The breaker's own probability agrees with the formula applied to
		// its window counts.
		now := origin + int64(40*time.Second)
		c := b.Counts(now)
		req := float64(c.Requests())
		formula := max(0, (req-K*float64(c.Accepts))/(req+1))
		if p := b.DropProbability(now); p != formula || c.Working != 0 {
			t.Errorf("DropProbability %v, formula on %+v gives %v", p, c, formula)
		}
		t.Logf("capacity %v/s: drop %.3f (formula %.3f), sent %.1f/s", capacity, got, want, rate)
	}
}

// An endpoint refusing everything gets about one call a second (the forced
// probe) and no storm; once it heals the send rate climbs back to the
// offered rate.
func TestOutageAndRecovery(t *testing.T) {
	const offered = 1000
	step := int64(time.Second) / offered
	b := New(seeded(1))
	s := &backend{capacity: 0}
	origin := int64(time.Hour)
	outage := origin + int64(30*time.Second)
	sent, _, _ := run(b, s, origin, outage, step)
	late := 0
	for _, c := range sent[len(sent)-40:] { // the outage's last 10 s
		late += c
	}
	if late > 25 {
		t.Fatalf("the endpoint refusing everything still got %d calls in 10 s, want ≤ 25", late)
	}
	if p := b.DropProbability(outage); p < 0.99 {
		t.Fatalf("drop probability %v after 30 s of refusals, want ≥ 0.99", p)
	}
	s.capacity = 1e6 // healed
	sent, _, _ = run(b, s, outage, outage+int64(20*time.Second), step)
	full := -1
	for i, c := range sent {
		if c >= 225 { // 90 % of the 250 calls offered per bucket
			full = i
			break
		}
	}
	if full < 0 {
		t.Fatalf("send rate never came back to 90 %% within 20 s: per bucket %v", sent)
	}
	recovery := time.Duration(full+1) * Bucket
	t.Logf("outage: %d calls in its last 10 s; after healing the send rate was back to ≥ 90 %% after %v; first 3 s per 250 ms: %v", late, recovery, sent[:12])
	// at most one forced probe (1 s) plus RecoveryBuckets, and a bucket
	// for the rate to show
	if limit := ForcePass + (RecoveryBuckets+1)*Bucket; recovery > limit {
		t.Fatalf("recovery took %v, want ≤ %v", recovery, limit)
	}
	// go-zero's scaling (over all 40 buckets) is much slower.
	slow := New(Options{RecoveryBuckets: Buckets, Rand: seeded(1).Rand})
	s = &backend{capacity: 0}
	run(slow, s, origin, outage, step)
	s.capacity = 1e6
	sent, _, _ = run(slow, s, outage, outage+int64(20*time.Second), step)
	back := "not within 20 s"
	for i, c := range sent {
		if c >= 225 {
			back = "after " + (time.Duration(i+1) * Bucket).String()
			break
		}
	}
	t.Logf("with go-zero's 40-bucket scaling: back to ≥ 90 %% %s", back)
}

func TestHealthyEndpointNeverDrops(t *testing.T) {
	b := New(seeded(2))
	s := &backend{capacity: 1e9}
	_, n, dropped := run(b, s, 0, int64(15*time.Second), int64(time.Millisecond))
	if dropped != 0 {
		t.Fatalf("dropped %d of %d calls to a healthy endpoint", dropped, n)
	}
}

func TestProtection(t *testing.T) {
	b := New(Options{Protection: 5, Rand: func() uint64 { return 0 }}) // rand 0: drop whenever p > 0
	for i := range 5 {
		b.MarkFailure(int64(i))
	}
	if err := b.Allow(10); err != nil {
		t.Fatalf("5 failures with protection 5: %v", err)
	}
	b.MarkFailure(11)
	b.lastPass.Store(11) // no forced probe
	if err := b.Allow(12); !errors.Is(err, ErrBreakerOpen) {
		t.Fatalf("6 failures with protection 5: %v, want ErrBreakerOpen", err)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		status   proto.Status
		answered bool
		want     Outcome
	}{
		{proto.StatusOK, true, Success},
		{proto.StatusApplication, true, Success},
		{proto.StatusApplication + 100, true, Success},
		{proto.StatusDenied, true, Success},
		{proto.StatusUnknownMethod, true, Success},
		{proto.StatusInternal, true, Success},
		{proto.StatusBadFrame, true, Success},
		{proto.StatusTooLarge, true, Success},
		{proto.StatusOverloaded, true, Failure},
		{proto.StatusRateLimited, true, Failure},
		{proto.StatusDeadlineExceeded, true, Failure},
		{proto.StatusOK, false, Failure},
	}
	for _, c := range cases {
		if got := Classify(c.status, c.answered); got != c.want {
			t.Errorf("Classify(%v, %v) = %v, want %v", c.status, c.answered, got, c.want)
		}
	}
}

// Counts saturating a bucket halve together, keeping the ratio.
func TestBucketHalving(t *testing.T) {
	b := New(Options{})
	for i := range 3 * countMax {
		if i%3 == 0 {
			b.MarkFailure(0)
		} else {
			b.MarkSuccess(0)
		}
	}
	c := b.Counts(0)
	if c.Accepts >= countMax+1 || c.Failures == 0 {
		t.Fatalf("counts %+v not halved", c)
	}
	if ratio := float64(c.Accepts) / float64(c.Failures); math.Abs(ratio-2) > 0.01 {
		t.Fatalf("accepts/failures %v after halving, want 2", ratio)
	}
}

func TestWindowRollsOff(t *testing.T) {
	b := New(Options{})
	for range 100 {
		b.MarkFailure(int64(time.Second))
	}
	if c := b.Counts(int64(time.Second)); c.Failures != 100 {
		t.Fatalf("counts %+v", c)
	}
	if c := b.Counts(int64(time.Second + Window)); c.Failures != 0 {
		t.Fatalf("failures older than the window still counted: %+v", c)
	}
	// A mark with a slightly older clock does not wipe a newer bucket.
	b.MarkSuccess(int64(20 * time.Second))
	b.MarkSuccess(int64(20*time.Second) - int64(Bucket))
	b.MarkSuccess(int64(20*time.Second) - int64(Buckets*Bucket) + 1) // a window late: same slot, dropped
	if c := b.Counts(int64(20 * time.Second)); c.Accepts != 2 {
		t.Fatalf("counts %+v, want 2 accepts", c)
	}
}

func TestConcurrentMarksAreNotLost(t *testing.T) {
	b := New(Options{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				now := int64(i) * int64(time.Millisecond) // 2 s: 8 buckets
				if g%2 == 0 {
					b.MarkSuccess(now)
				} else {
					b.MarkFailure(now)
				}
				b.Allow(now)
			}
		}()
	}
	wg.Wait()
	c := b.Counts(int64(2 * time.Second))
	if c.Accepts != 4000 || c.Failures != 4000 {
		t.Fatalf("counts %+v, want 4000 accepts and 4000 failures", c)
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry(Options{})
	ep := netip.MustParseAddrPort("10.0.0.1:7000")
	a := r.Get(ep, 1)
	if r.Get(ep, 1) != a || r.Get(netip.MustParseAddrPort("[::ffff:10.0.0.1]:7000"), 1) != a {
		t.Fatal("the same endpoint method got two breakers")
	}
	if r.Get(ep, 2) == a || r.Get(netip.MustParseAddrPort("10.0.0.1:7001"), 1) == a {
		t.Fatal("different endpoint methods share a breaker")
	}
	r.Forget(ep)
	if len(r.Keys()) != 1 || r.Get(ep, 1) == a {
		t.Fatalf("Forget left %v", r.Keys())
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				br := r.Get(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)}), 7000), uint32(i%3+1))
				br.Allow(0)
				br.MarkSuccess(0)
			}
		}()
	}
	wg.Wait()
	if n := len(r.Keys()); n != 2+4*200 {
		t.Fatalf("%d keys, want %d", n, 2+4*200)
	}
}

func BenchmarkAllowMark(b *testing.B) {
	br := New(Options{})
	b.ReportAllocs()
	now := int64(time.Hour)
	for b.Loop() {
		now += 1000
		if err := br.Allow(now); err != nil {
			b.Fatal(err)
		}
		br.Mark(now, Classify(proto.StatusOK, true))
	}
}

// Allow while the breaker is dropping: the formula, the random draw and a
// CAS on a drop.
func BenchmarkAllowThrottling(b *testing.B) {
	br := New(Options{})
	now := int64(time.Hour)
	for range 1000 {
		br.MarkFailure(now)
	}
	br.MarkSuccess(now)
	b.ReportAllocs()
	for b.Loop() {
		br.Allow(now)
	}
}

func BenchmarkRegistryGet(b *testing.B) {
	r := NewRegistry(Options{})
	eps := make([]netip.AddrPort, 256)
	for i := range eps {
		eps[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 7000)
		r.Get(eps[i], 42)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Get(eps[i&255], 42)
		i++
	}
}
