package balance

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/runtime"
)

func TestMain(m *testing.M) { leak.Main(m) }

// capture sits between the runtime and a balancer under test: it keeps
// the balancer and the last picker it installed, so a test can pick and
// report results directly, on real SubConns of a real engine. Nothing is
// sent: the endpoints' addresses answer nothing.
type capture struct {
	inner runtime.BalancerBuilder

	mu       sync.Mutex
	balancer runtime.Balancer
	picker   atomic.Pointer[pickerBox]
	updates  atomic.Int64
}

type pickerBox struct{ p runtime.Picker }

func (c *capture) Build(cc runtime.BalancerConn) runtime.Balancer {
	b := c.inner.Build(&captureConn{BalancerConn: cc, c: c})
	c.mu.Lock()
	c.balancer = b
	c.mu.Unlock()
	return b
}

type captureConn struct {
	runtime.BalancerConn
	c *capture
}

func (cc *captureConn) UpdatePicker(p runtime.Picker) {
	cc.c.picker.Store(&pickerBox{p})
	cc.c.updates.Add(1)
	cc.BalancerConn.UpdatePicker(p)
}

func (c *capture) pick(t testing.TB, info *runtime.PickInfo) *runtime.SubConn {
	t.Helper()
	sc, err := c.picker.Load().p.Pick(info)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return sc
}

func (c *capture) done(sc *runtime.SubConn, r runtime.AttemptResult) {
	c.mu.Lock()
	b := c.balancer
	c.mu.Unlock()
	b.Done(sc, &r)
}

// setup builds a DialService client over eps (addresses that answer
// nothing) with the balancer builder b, and returns the capture and the
// SubConns in the order of eps.
func setup(t testing.TB, b runtime.BalancerBuilder, eps ...runtime.Endpoint) (*capture, []*runtime.SubConn, *runtime.Client) {
	t.Helper()
	eng, err := runtime.NewEngine()
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	c := &capture{inner: b}
	client, err := runtime.DialService("test.Balance", runtime.WithEngine(eng), runtime.WithResolver(static.New(eps...)), runtime.WithBalancer(c))
	if err != nil {
		t.Fatalf("DialService: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	waitFor(t, "the first picker", func() bool { return c.picker.Load() != nil })
	return c, subconnsOf(t, client, eps), client
}

// subconnsOf returns client's SubConns in the order of eps.
func subconnsOf(t testing.TB, client *runtime.Client, eps []runtime.Endpoint) []*runtime.SubConn {
	t.Helper()
	got := client.Endpoints()
	out := make([]*runtime.SubConn, len(eps))
	for i, e := range eps {
		k := slices.IndexFunc(got, func(sc *runtime.SubConn) bool { return sc.Addr() == e.Addr })
		if k < 0 {
			t.Fatalf("no SubConn for %v among %d", e.Addr, len(got))
		}
		out[i] = got[k]
	}
	return out
}

// addrs returns n endpoints on loopback ports that nothing listens on
// (the discard port's neighbours are never used for calls here).
func addrs(n int, opts ...func(i int, e *runtime.Endpoint)) []runtime.Endpoint {
	eps := make([]runtime.Endpoint, n)
	for i := range eps {
		eps[i] = runtime.Endpoint{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(20000+i))}
		for _, o := range opts {
			o(i, &eps[i])
		}
	}
	return eps
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeInflight holds in-flight counts tests set by hand.
type fakeInflight struct {
	mu sync.Mutex
	n  map[*runtime.SubConn]int64
}

func (f *fakeInflight) get(sc *runtime.SubConn) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[sc]
}

func (f *fakeInflight) add(sc *runtime.SubConn, d int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[*runtime.SubConn]int64{}
	}
	f.n[sc] += d
}

// testP2C is a P2C builder on a fake clock (starting at 1 h, so "never
// picked" is long ago) and, when in is not nil, fake in-flight counts.
func testP2C(t testing.TB, clk *fakeClock, in *fakeInflight, opts ...P2COption) *P2CBuilder {
	t.Helper()
	b, err := NewP2C(opts...)
	if err != nil {
		t.Fatal(err)
	}
	clk.ns.Store(int64(time.Hour))
	b.cfg.now = clk.now
	if in != nil {
		b.cfg.inflight = in.get
	}
	return b
}

// share formats counts as percentages.
func share(counts map[*runtime.SubConn]int, scs []*runtime.SubConn) string {
	total := 0
	for _, n := range counts {
		total += n
	}
	s := ""
	for i, sc := range scs {
		s += fmt.Sprintf(" [%d] %d (%.1f%%)", i, counts[sc], 100*float64(counts[sc])/float64(max(total, 1)))
	}
	return s
}
