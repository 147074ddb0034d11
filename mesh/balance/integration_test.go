package balance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/runtime"
)

// The integration tests: real zerohop servers (the io_uring backend), each
// in a namespace of its own, joined by veth to the client's namespace, and
// a DialService client calling them by service name.

// testServer is one server and the calls its handler ran.
type testServer struct {
	srv   *runtime.Server
	addr  netip.AddrPort
	calls atomic.Int64
}

// cluster is a client namespace and n server namespaces.
type cluster struct {
	t       *testing.T
	client  *topo.Host
	eng     *runtime.Engine
	servers []*testServer
}

// newCluster starts n servers of echo's Echo method; server i's handler is
// blocking and sleeps delay(i) when delay is not nil, and runs on the loop
// otherwise.
func newCluster(t *testing.T, n int, delay func(i int) time.Duration) *cluster {
	topo.RequireRoot(t)
	tp := topo.New(t, topo.Config{Hosts: n + 1})
	c := &cluster{t: t, client: tp.Hosts[0]}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i, l := range tp.Links {
		s := &testServer{addr: netip.AddrPortFrom(l.B.Addr4, 7000)}
		err := l.B.Host.Do(func() error {
			// Workers enough for every caller of the tests: a server's
			// latency is its handler's, not a queue's.
			srv, err := runtime.Listen("udp", s.addr.String(), runtime.WithBackend(runtime.BackendUring),
				runtime.WithBusyPoll(0), runtime.WithLogger(quiet), runtime.WithWorkers(32, 1024))
			if err != nil {
				return err
			}
			s.srv = srv
			if delay == nil {
				srv.Handle(echo.EchoMethod, func(req *runtime.Request, resp *runtime.Response) {
					s.calls.Add(1)
					echo.Echo(req, resp)
				})
			} else {
				d := delay(i)
				srv.HandleBlocking(echo.EchoMethod, func(req *runtime.Request, resp *runtime.Response) {
					s.calls.Add(1)
					if d > 0 {
						time.Sleep(d)
					}
					echo.Echo(req, resp)
				})
			}
			return srv.Start()
		})
		if err != nil {
			t.Fatalf("server %d at %v: %v", i, s.addr, err)
		}
		t.Cleanup(func() { s.srv.Shutdown(context.Background()) })
		c.servers = append(c.servers, s)
	}
	if err := c.client.Do(func() error {
		var err error
		c.eng, err = runtime.NewEngine(runtime.WithEngineLogger(quiet))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.eng.Close() })
	return c
}

func (c *cluster) endpoints(weights ...uint32) []runtime.Endpoint {
	eps := make([]runtime.Endpoint, len(c.servers))
	for i, s := range c.servers {
		eps[i] = runtime.Endpoint{Addr: s.addr}
		if i < len(weights) {
			eps[i].Weight = weights[i]
		}
	}
	return eps
}

// dial calls the cluster by service name with balancer b. A long minimum
// retransmission timeout keeps a slow server's calls from timing out and
// failing over, so the balancer alone decides where calls go.
func (c *cluster) dial(b runtime.BalancerBuilder, eps []runtime.Endpoint) *runtime.Client {
	c.t.Helper()
	client, err := runtime.DialService("zerohop.Echo", runtime.WithEngine(c.eng), runtime.WithResolver(static.New(eps...)),
		runtime.WithBalancer(b), runtime.WithMinRTO(200*time.Millisecond), runtime.WithRetransmission(200*time.Millisecond, time.Second, 8))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { client.Close() })
	return client
}

func (c *cluster) counts() []int64 {
	out := make([]int64, len(c.servers))
	for i, s := range c.servers {
		out[i] = s.calls.Load()
	}
	return out
}

// load is the outcome of calls made by concurrent callers.
type load struct {
	calls, failed int64
	latencies     []time.Duration
	firstErr      error
}

func (l *load) quantile(q float64) time.Duration {
	if len(l.latencies) == 0 {
		return 0
	}
	s := slices.Clone(l.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(q*float64(len(s))))-1)]
}

// run makes calls calls from callers goroutines (or runs until stop is
// closed when calls is 0), each with a 2 s deadline.
func run(client *runtime.Client, callers, calls int, stop <-chan struct{}) *load {
	var mu sync.Mutex
	l := &load{}
	var next atomic.Int64
	var wg sync.WaitGroup
	payload := []byte{0x0a, 0x03, 'a', 'b', 'c'}
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 64)
			var lat []time.Duration
			var failed int64
			var first error
			for {
				if calls > 0 && next.Add(1) > int64(calls) {
					break
				}
				if stop != nil {
					select {
					case <-stop:
						goto out
					default:
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				start := time.Now()
				_, err := client.Call(ctx, echo.EchoMethod, payload, buf)
				cancel()
				lat = append(lat, time.Since(start))
				if err != nil {
					failed++
					if first == nil {
						first = err
					}
				}
			}
		out:
			mu.Lock()
			l.calls += int64(len(lat))
			l.failed += failed
			l.latencies = append(l.latencies, lat...)
			if l.firstErr == nil {
				l.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return l
}

func spreadOf(counts []int64) string {
	var total int64
	for _, n := range counts {
		total += n
	}
	s := ""
	for i, n := range counts {
		s += fmt.Sprintf(" [%d] %d (%.1f%%)", i, n, 100*float64(n)/float64(max(total, 1)))
	}
	return s
}

func diff(a, b []int64) []int64 {
	out := make([]int64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

// Three servers, 20,000 calls by service name from 16 callers: with round
// robin each server gets a third ± 10 %, and with weights 1, 2, 3 its
// share ± 10 %. p2c runs the same calls; it follows the servers' measured
// service times, which on a shared 2-core machine differ between identical
// echo servers by more than 10 % (their cost estimates are logged beside
// the spread), so for p2c only that every server got calls is asserted
// here; its spread and weights at equal speed are checked exactly by the
// simulated tests (TestP2CWeightsUnderLoad).
func TestSpreadAndWeightsOverThreeServers(t *testing.T) {
	c := newCluster(t, 3, nil)
	const calls = 20000
	for _, tc := range []struct {
		name    string
		b       runtime.BalancerBuilder
		weights []uint32
	}{
		{"roundrobin", RoundRobin(), nil},
		{"roundrobin/weights", RoundRobin(), []uint32{1, 2, 3}},
		{"p2c", P2C(), nil},
		{"p2c/weights", P2C(), []uint32{1, 2, 3}},
	} {
		cb := &capture{inner: tc.b}
		client := c.dial(cb, c.endpoints(tc.weights...))
		before := c.counts()
		start := time.Now()
		l := run(client, 16, calls, nil)
		took := time.Since(start)
		got := diff(c.counts(), before)
		_, rr := tc.b.(RoundRobinBuilder)
		t.Logf("%s: %d calls in %v, %d failed, p50 %v p99 %v; per server:%s%s", tc.name, l.calls, took.Round(time.Millisecond),
			l.failed, l.quantile(0.5), l.quantile(0.99), spreadOf(got), c.estimates(cb))
		if l.failed != 0 {
			t.Errorf("%s: %d calls failed, first: %v", tc.name, l.failed, l.firstErr)
		}
		var total, wsum int64
		for i := range got {
			total += got[i]
			wsum += int64(weightAt(tc.weights, i))
		}
		for i := range got {
			want := float64(total) * float64(weightAt(tc.weights, i)) / float64(wsum)
			if d := math.Abs(float64(got[i])-want) / want; d > 0.1 && rr {
				t.Errorf("%s: server %d got %d calls, want %.0f ± 10%% (%.1f%% off)", tc.name, i, got[i], want, 100*d)
			}
			if got[i] == 0 {
				t.Errorf("%s: server %d got no call", tc.name, i)
			}
		}
		client.Close()
	}
}

// estimates describes a p2c balancer's estimates of the servers' costs.
func (c *cluster) estimates(cb *capture) string {
	cb.mu.Lock()
	p, ok := cb.balancer.(*p2cBalancer)
	cb.mu.Unlock()
	if !ok {
		return ""
	}
	s := "; cost estimates:"
	now := monoNs()
	for i, srv := range c.servers {
		for sc, e := range *p.states.Load() {
			if sc.Addr() == srv.addr {
				s += fmt.Sprintf(" [%d] %v", i, time.Duration(e.read(now, p.b.cfg.tauNs)).Round(100*time.Nanosecond))
			}
		}
	}
	return s
}

func weightAt(w []uint32, i int) uint32 {
	if i < len(w) && w[i] > 0 {
		return w[i]
	}
	return 1
}

// One server's handler sleeps 20 ms, the others' none: within the first
// second of load p2c sends ≥ 90 % of calls to the fast ones, and its p99
// is compared with round robin's in the same run. p2c weighs a server's
// latency by its calls in flight, so it rightly sends some calls to the
// slow server once the fast ones queue; on a loaded machine (the race
// detector, other packages' tests) the fast servers took 2 ms at p50, and
// with a 5 ms sleep the slow one then earned 12 % of the calls. 20 ms keeps
// the contrast the test is about.
func TestSlowServerAvoided(t *testing.T) {
	c := newCluster(t, 3, func(i int) time.Duration {
		if i == 0 {
			return 20 * time.Millisecond
		}
		return 0
	})
	const callers = 8
	type result struct {
		name      string
		firstSec  []int64
		total     []int64
		l         *load
		p99, p50  time.Duration
		fastShare float64
	}
	var results []result
	for _, tc := range []struct {
		name string
		b    runtime.BalancerBuilder
	}{{"p2c", P2C()}, {"roundrobin", RoundRobin()}} {
		client := c.dial(tc.b, c.endpoints())
		before := c.counts()
		stop := make(chan struct{})
		var first []int64
		done := make(chan *load)
		go func() { done <- run(client, callers, 0, stop) }()
		time.Sleep(time.Second)
		first = diff(c.counts(), before)
		time.Sleep(time.Second)
		close(stop)
		l := <-done
		total := diff(c.counts(), before)
		r := result{name: tc.name, firstSec: first, total: total, l: l, p50: l.quantile(0.5), p99: l.quantile(0.99)}
		r.fastShare = float64(first[1]+first[2]) / float64(max(first[0]+first[1]+first[2], 1))
		results = append(results, r)
		t.Logf("%s: %d calls in 2 s from %d callers, %d failed; first second:%s (%.1f%% to the fast ones); 2 s:%s; p50 %v p99 %v",
			tc.name, l.calls, callers, l.failed, spreadOf(first), 100*r.fastShare, spreadOf(total), r.p50, r.p99)
		if l.failed != 0 {
			t.Errorf("%s: %d calls failed, first: %v", tc.name, l.failed, l.firstErr)
		}
		client.Close()
	}
	if results[0].fastShare < 0.9 {
		t.Errorf("p2c sent %.1f%% of the first second's calls to the fast servers, want ≥ 90%%", 100*results[0].fastShare)
	}
	t.Logf("p99: p2c %v, round robin %v (p50: %v, %v)", results[0].p99, results[1].p99, results[0].p50, results[1].p50)
}
