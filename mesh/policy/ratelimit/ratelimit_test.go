package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerohop/zerohop/proto"
)

const (
	mGet = "shop.Cart/Get"
	mPut = "shop.Cart/Put"
	mPay = "shop.Pay/Charge"
)

var (
	idGet = proto.MethodID(mGet)
	idPut = proto.MethodID(mPut)
	idPay = proto.MethodID(mPay)
	peer  = netip.MustParseAddr("10.1.2.3")
)

func mustNew(t testing.TB, cfg Config) *Limiter {
	t.Helper()
	if cfg.Methods == nil {
		cfg.Methods = []string{mGet, mPut, mPay}
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The scenario on a fake clock: 1,000/s with burst 100 on one
// method, offered 5,000/s for 2 s, spread over loops in three ways.
func TestAcceptedCountIsRatePlusBurst(t *testing.T) {
	const (
		rate, burst = 1000, 100
		offered     = 5000
		span        = 2 * time.Second
	)
	spreads := map[string]func(r *rand.Rand, i, loops int) int{
		"round robin": func(_ *rand.Rand, i, loops int) int { return i % loops },
		"one loop":    func(_ *rand.Rand, _, _ int) int { return 0 },
		"random":      func(r *rand.Rand, _, loops int) int { return r.IntN(loops) },
		// most calls on one loop, a trickle on the others, which then hold
		// leased tokens they are slow to spend
		"skewed": func(r *rand.Rand, _, loops int) int {
			if r.IntN(10) == 0 {
				return r.IntN(loops)
			}
			return 0
		},
	}
	for _, loops := range []int{1, 2, 8} {
		for name, spread := range spreads {
			t.Run(fmt.Sprintf("%d loops/%s", loops, name), func(t *testing.T) {
				l := mustNew(t, Config{Loops: loops, Rules: []Rule{{Method: mGet, Rate: rate, Burst: burst}}})
				k := int64(l.LeaseSize(0))
				r := rand.New(rand.NewPCG(7, uint64(loops)))
				step := int64(time.Second) / offered
				n := int(int64(span) / step)
				start := int64(12345 * time.Second) // an arbitrary monotonic origin
				accepted, limited := 0, 0
				for i := range n {
					now := start + int64(i)*step
					ok, retry := l.Loop(spread(r, i, loops)).Allow(now, idGet, nil, peer)
					if ok {
						accepted++
					} else {
						limited++
						if retry <= 0 || retry > time.Second/rate {
							t.Fatalf("call %d refused with retry %v, want (0, %v]", i, retry, time.Second/rate)
						}
					}
					// exact upper bound from creation: R·t + B
					if limit := int(int64(i)*step*rate/int64(time.Second)) + burst + 1; accepted > limit {
						t.Fatalf("after %d calls (t=%v) accepted %d > R·t+B = %d", i+1, time.Duration(int64(i)*step), accepted, limit)
					}
				}
				want := rate*span.Seconds() + burst
				if d := float64(accepted) - want; d > 0.1*want || d < -0.1*want {
					t.Fatalf("accepted %d of %d, want %v ± 10 %%", accepted, n, want)
				}
				// the lower bound of the package doc
				if low := int(want) - int((int64(loops)-1)*(k-1)) - 1; accepted < low {
					t.Fatalf("accepted %d < R·t + B − (L−1)(k−1) = %d (k=%d)", accepted, low, k)
				}
				st := l.Stats()[0]
				if st.Allowed != uint64(accepted) || st.Limited != uint64(limited) || st.ShadowLimited != 0 {
					t.Fatalf("Stats %+v, want allowed %d limited %d", st, accepted, limited)
				}
				t.Logf("accepted %d of %d (R·t+B = %v, lease %d)", accepted, n, want, k)
			})
		}
	}
}

// In windows that start after the limiter warmed up, leased tokens may add
// at most L·(k−1) to R·t + B.
func TestWindowBound(t *testing.T) {
	const rate, burst, loops = 1000, 200, 4
	l := mustNew(t, Config{Loops: loops, Rules: []Rule{{Method: mGet, Rate: rate, Burst: burst}}})
	k := int64(l.LeaseSize(0))
	if k != 12 {
		t.Fatalf("lease %d, want ⌊200/16⌋ = 12", k)
	}
	r := rand.New(rand.NewPCG(3, 4))
	// Idle phases let buckets and leases fill, busy phases drain them.
	var times []int64
	var accepted []bool
	now := int64(0)
	for phase := range 40 {
		n, step := 2000, int64(100*time.Microsecond)
		if phase%2 == 0 {
			n, step = 50, int64(10*time.Millisecond)
		}
		for range n {
			now += step
			ok, _ := l.Loop(r.IntN(loops)).Allow(now, idGet, nil, peer)
			times = append(times, now)
			accepted = append(accepted, ok)
		}
	}
	window := int64(300 * time.Millisecond)
	bound := int(window*rate/int64(time.Second)) + burst + loops*int(k-1) + 1
	worst := 0
	for i := range times {
		count := 0
		for j := i; j < len(times) && times[j]-times[i] < window; j++ {
			if accepted[j] {
				count++
			}
		}
		if count > bound {
			t.Fatalf("window from %v admitted %d > R·t + B + L(k−1) = %d", time.Duration(times[i]), count, bound)
		}
		worst = max(worst, count)
	}
	t.Logf("worst 300 ms window admitted %d (bound %d, R·t+B = %d)", worst, bound, 300+burst)
}

// With the clock frozen no token is ever refilled: however the loops
// interleave, exactly Burst calls get through.
func TestConcurrentLoopsShareOneBudget(t *testing.T) {
	const loops, burst, per = 8, 1000, 5000
	l := mustNew(t, Config{Loops: loops, Rules: []Rule{{Method: mGet, Rate: 1, Burst: burst}}})
	var wg sync.WaitGroup
	got := make([]int, loops)
	for i := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := l.Loop(i)
			for range per {
				if ok, _ := p.Allow(1e9, idGet, nil, peer); ok {
					got[i]++
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, g := range got {
		total += g
	}
	if total != burst {
		t.Fatalf("loops admitted %v = %d in all, want exactly the burst %d", got, total, burst)
	}
	if s := l.Stats()[0]; s.Allowed != burst || s.Limited != loops*per-burst {
		t.Fatalf("Stats %+v", s)
	}
}

func TestRetryAfterIsWhenATokenReturns(t *testing.T) {
	l := mustNew(t, Config{Loops: 1, Rules: []Rule{{Method: mGet, Rate: 10, Burst: 2}}})
	p := l.Loop(0)
	now := int64(time.Hour)
	for i := range 2 {
		if ok, _ := p.Allow(now, idGet, nil, peer); !ok {
			t.Fatalf("call %d of the burst refused", i)
		}
	}
	ok, retry := p.Allow(now, idGet, nil, peer)
	if ok || retry != 100*time.Millisecond {
		t.Fatalf("third call: %v, retry %v; want refused, retry 100ms", ok, retry)
	}
	if ok, retry := p.Allow(now+int64(40*time.Millisecond), idGet, nil, peer); ok || retry != 60*time.Millisecond {
		t.Fatalf("40 ms later: %v, retry %v; want refused, retry 60ms", ok, retry)
	}
	if ok, _ := p.Allow(now+int64(retry)+int64(40*time.Millisecond), idGet, nil, peer); !ok {
		t.Fatal("refused after waiting the advertised retry")
	}
}

func TestShadowCountsButAdmits(t *testing.T) {
	l := mustNew(t, Config{Loops: 2, Rules: []Rule{{Method: mGet, Rate: 100, Burst: 10, Shadow: true}}})
	for i := range 1000 { // 1,000 calls in 1 s: 100·1 + 10 fit
		if ok, _ := l.Loop(i%2).Allow(int64(i)*int64(time.Millisecond), idGet, nil, peer); !ok {
			t.Fatalf("shadow rule refused call %d", i)
		}
	}
	s := l.Stats()[0]
	if s.Limited != 0 || s.Allowed+s.ShadowLimited != 1000 {
		t.Fatalf("Stats %+v", s)
	}
	if s.Allowed < 105 || s.Allowed > 115 {
		t.Fatalf("shadow bucket let %d calls through on tokens, want ≈ 110", s.Allowed)
	}
}

func TestRuleSelection(t *testing.T) {
	l := mustNew(t, Config{Loops: 1, Rules: []Rule{
		{Name: "billing", Method: "shop.Cart/*", Caller: "billing", Rate: 1, Burst: 3},
		{Name: "lab", Method: "shop.Cart/*", Source: netip.MustParsePrefix("10.9.0.0/16"), Rate: 1, Burst: 1},
		{Name: "cart", Method: "shop.Cart/*", Rate: 1, Burst: 2},
		{Name: "pay", Method: mPay, Rate: 1, Burst: 1, Shared: true},
	}})
	p := l.Loop(0)
	count := func(method uint32, caller string, src string) int {
		n := 0
		for range 10 {
			var c []byte
			if caller != "" {
				c = []byte(caller)
			}
			if ok, _ := p.Allow(5, method, c, netip.MustParseAddr(src)); ok {
				n++
			}
		}
		return n
	}
	if n := count(idGet, "billing", "10.9.0.1"); n != 3 {
		t.Errorf("billing on Get got %d, want its own burst 3 (the first matching rule)", n)
	}
	if n := count(idGet, "web", "10.9.0.1"); n != 1 {
		t.Errorf("lab source on Get got %d, want 1", n)
	}
	if n := count(idGet, "web", "::ffff:10.9.0.2"); n != 0 {
		t.Errorf("lab source as v4-mapped got %d, want 0 (same bucket, now empty)", n)
	}
	if n := count(idGet, "", "192.0.2.1"); n != 2 {
		t.Errorf("other source on Get got %d, want 2", n)
	}
	if n := count(idPut, "", "192.0.2.1"); n != 2 {
		t.Errorf("Put got %d, want 2: each method has its own bucket", n)
	}
	if n := count(idPay, "", "192.0.2.1"); n != 1 {
		t.Errorf("Pay got %d, want 1", n)
	}
	if n := count(proto.MethodID("other.Svc/X"), "", "192.0.2.1"); n != 10 {
		t.Errorf("unknown method got %d, want 10 (not limited)", n)
	}
	stats := l.Stats()
	if len(stats) != 7 || stats[0].Rule != "billing" || stats[0].Method != mGet || stats[6].Method != "" {
		t.Fatalf("Stats %+v", stats)
	}
}

func TestSharedBucket(t *testing.T) {
	l := mustNew(t, Config{Loops: 1, Rules: []Rule{{Method: "shop.Cart/*", Rate: 1, Burst: 3, Shared: true}}})
	n := 0
	for i := range 10 {
		id := idGet
		if i%2 == 1 {
			id = idPut
		}
		if ok, _ := l.Loop(0).Allow(0, id, nil, peer); ok {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("Get and Put together got %d, want the one shared burst 3", n)
	}
}

func TestConfigErrors(t *testing.T) {
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{Loops: 0}, "Config.Loops"},
		{Config{Loops: 1, Rules: []Rule{{Name: "x", Rate: 0, Burst: 1}}}, `rule 0 ("x"): Rate`},
		{Config{Loops: 1, Rules: []Rule{{Rate: 2e9, Burst: 1}}}, "Rate"},
		{Config{Loops: 1, Rules: []Rule{{Rate: 1, Burst: 0}}}, `rule 0 ("rule 0"): Burst`},
		{Config{Loops: 1, Rules: []Rule{{Rate: 1, Burst: 1, Method: "a b"}}}, "Method"},
		{Config{Loops: 1, Methods: []string{mGet, mGet}}, "Config.Methods"},
	}
	for _, c := range bad {
		if c.cfg.Methods == nil {
			c.cfg.Methods = []string{mGet}
		}
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error naming %q", c.cfg, err, c.want)
		}
	}
	l := mustNew(t, Config{Loops: 1, Rules: []Rule{{Name: "typo", Method: "shop.Crat/*", Rate: 1, Burst: 1}}})
	if w := l.Warnings(); len(w) != 1 || !strings.Contains(w[0], `"shop.Crat/*" matches no known method`) {
		t.Fatalf("Warnings() = %q", w)
	}
	if _, err := l.LoopChecked(1); err == nil {
		t.Fatal("LoopChecked(1) of 1 loop succeeded")
	}
}

func BenchmarkAllow(b *testing.B) {
	l := mustNew(b, Config{Loops: 1, Rules: []Rule{
		{Method: mPut, Caller: "billing", Rate: 1e6, Burst: 1000},
		{Method: "shop.Cart/*", Rate: 1e8, Burst: 10000},
	}})
	p := l.Loop(0)
	caller := []byte("web")
	b.ReportAllocs()
	now := int64(0)
	for b.Loop() {
		now += 20 // 5e7 calls/s offered against 1e8/s: never limited
		if ok, _ := p.Allow(now, idGet, caller, peer); !ok {
			b.Fatal("limited")
		}
	}
}

// Every goroutine is its own loop hitting one bucket, as L loops would.
func BenchmarkAllowParallel(b *testing.B) {
	const loops = 64
	l := mustNew(b, Config{Loops: loops, Rules: []Rule{{Method: mGet, Rate: 1e9, Burst: 1 << 40}}})
	// The burst outlasts the skew between the goroutines' fake clocks, so no
	// goroutine finds the bucket empty because another ran ahead in time.
	var next sync.Mutex
	i := 0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		p := l.Loop(i % loops)
		i++
		next.Unlock()
		now := int64(0)
		for pb.Next() {
			now += 1000
			p.Allow(now, idGet, nil, peer)
		}
	})
}

// A reload that keeps a limit keeps its bucket: the new limiter starts
// where the old one was, not with a fresh burst; a changed limit starts
// full.
func TestCarryKeepsEqualBuckets(t *testing.T) {
	rules := []Rule{{Name: "put", Method: mPut, Rate: 10, Burst: 5}, {Name: "get", Method: mGet, Rate: 10, Burst: 5}}
	old := mustNew(t, Config{Loops: 1, Rules: rules})
	now := int64(time.Hour)
	for range 5 {
		old.Loop(0).Allow(now, idPut, nil, peer)
		old.Loop(0).Allow(now, idGet, nil, peer)
	}
	changed := append([]Rule(nil), rules...)
	changed[1].Rate = 20
	next := mustNew(t, Config{Loops: 1, Rules: changed})
	next.Carry(old)
	if ok, retry := next.Loop(0).Allow(now, idPut, nil, peer); ok || retry != 100*time.Millisecond {
		t.Fatalf("the kept limit: allowed %v, retry %v; want refused for 100ms", ok, retry)
	}
	for i := range 5 {
		if ok, _ := next.Loop(0).Allow(now, idGet, nil, peer); !ok {
			t.Fatalf("the changed limit refused call %d of its fresh burst", i)
		}
	}
	next.Carry(nil) // nothing to carry: no effect, no panic
}
