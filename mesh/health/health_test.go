package health

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/mesh/discovery/static"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

func TestMain(m *testing.M) { leak.Main(m) }

// recorder is an inner balancer that records what it is handed and picks
// the first endpoint it has.
type recorder struct {
	mu    sync.Mutex
	last  []*runtime.SubConn
	dones int
}

func (r *recorder) Build(cc runtime.BalancerConn) runtime.Balancer { return &recBal{r: r, cc: cc} }

type recBal struct {
	r  *recorder
	cc runtime.BalancerConn
}

func (b *recBal) UpdateState(s runtime.BalancerState) {
	b.r.mu.Lock()
	b.r.last = slices.Clone(s.SubConns)
	b.r.mu.Unlock()
	b.cc.UpdatePicker(firstPicker(slices.Clone(s.SubConns)))
}

func (b *recBal) Done(*runtime.SubConn, *runtime.AttemptResult) {
	b.r.mu.Lock()
	b.r.dones++
	b.r.mu.Unlock()
}

func (b *recBal) Close() {}

type firstPicker []*runtime.SubConn

func (p firstPicker) Pick(*runtime.PickInfo) (*runtime.SubConn, error) {
	if len(p) == 0 {
		return nil, runtime.ErrNoSubConnAvailable
	}
	return p[0], nil
}

func (r *recorder) handed() []*runtime.SubConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.last)
}

// fixture is a health balancer in manual mode on a fake clock, over real
// SubConns of a DialService client whose endpoints answer nothing.
type fixture struct {
	t   *testing.T
	b   *Builder
	bal *balancer
	rec *recorder
	scs []*runtime.SubConn
	now atomic.Int64
	cli *runtime.Client
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newFixture(t *testing.T, n int, cfg Config) *fixture {
	t.Helper()
	f := &fixture{t: t, rec: &recorder{}}
	f.now.Store(int64(time.Hour))
	cfg.Logger = quiet
	b, err := Wrap(f.rec, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.manual, b.nowNs = true, f.now.Load
	f.b = b
	eng, err := runtime.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	eps := make([]runtime.Endpoint, n)
	for i := range eps {
		eps[i] = runtime.Endpoint{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(21000+i))}
	}
	cli, err := runtime.DialService("test.Health", runtime.WithEngine(eng), runtime.WithResolver(static.New(eps...)), runtime.WithBalancer(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	f.cli = cli
	deadline := time.Now().Add(10 * time.Second)
	for len(f.rec.handed()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("the inner balancer never got the %d endpoints", n)
		}
		time.Sleep(time.Millisecond)
	}
	b.mu.Lock()
	for bal := range b.balancers {
		f.bal = bal
	}
	b.mu.Unlock()
	got := cli.Endpoints()
	for _, e := range eps {
		k := slices.IndexFunc(got, func(sc *runtime.SubConn) bool { return sc.Addr() == e.Addr })
		f.scs = append(f.scs, got[k])
	}
	return f
}

func (f *fixture) advance(d time.Duration) { f.now.Add(int64(d)) }

func (f *fixture) done(i int, r runtime.AttemptResult) { f.bal.Done(f.scs[i], &r) }

func (f *fixture) fail(i, times int) {
	for range times {
		f.done(i, runtime.AttemptResult{Err: runtime.ErrNoReply})
	}
}

func (f *fixture) ok(i int) {
	f.done(i, runtime.AttemptResult{Answered: true, RTT: 30 * time.Microsecond})
}

// in reports whether endpoint i is handed to the inner balancer.
func (f *fixture) in(i int) bool { return slices.Contains(f.rec.handed(), f.scs[i]) }

func (f *fixture) stats(i int) EndpointStats {
	for _, st := range f.b.Stats() {
		if st.Addr == f.scs[i].Addr() {
			return st
		}
	}
	f.t.Fatalf("no stats for endpoint %d", i)
	return EndpointStats{}
}

func (f *fixture) pick() *runtime.SubConn {
	f.t.Helper()
	sc, err := f.bal.pickerForTest().Pick(&runtime.PickInfo{})
	if err != nil {
		f.t.Fatalf("Pick: %v", err)
	}
	return sc
}

// pickerForTest is the picker installed now.
func (bal *balancer) pickerForTest() runtime.Picker {
	bal.pickMu.Lock()
	defer bal.pickMu.Unlock()
	return &picker{inner: bal.lastInner, trials: bal.trials, nowNs: bal.b.nowNs}
}

func TestProbeThresholds(t *testing.T) {
	f := newFixture(t, 2, Config{})
	e := (*f.bal.eps.Load())[f.scs[0]]
	timeout := context.DeadlineExceeded
	f.bal.onProbe(e, 0, timeout)
	f.bal.onProbe(e, 0, timeout)
	if !f.in(0) {
		t.Fatal("out after 2 failed probes; UnhealthyThreshold is 3")
	}
	f.bal.onProbe(e, 0, timeout)
	if f.in(0) || f.stats(0).State != Unhealthy {
		t.Fatalf("still in (%v) after 3 failed probes", f.stats(0).State)
	}
	f.bal.onProbe(e, proto.PongServing, nil)
	if f.in(0) {
		t.Fatal("back after 1 PONG; HealthyThreshold is 2")
	}
	f.bal.onProbe(e, 0, timeout) // the streak of PONGs starts again
	f.bal.onProbe(e, proto.PongServing, nil)
	if f.in(0) {
		t.Fatal("back after PONG, failure, PONG")
	}
	f.bal.onProbe(e, proto.PongServing, nil)
	if !f.in(0) || f.stats(0).State != Healthy {
		t.Fatalf("not back (%v) after 2 PONGs in a row", f.stats(0).State)
	}
	if st := f.stats(0); st.ProbesOK != 3 || st.ProbesFailed != 4 {
		t.Errorf("probes ok %d failed %d, want 3 and 4", st.ProbesOK, st.ProbesFailed)
	}
}

func TestDrainingPongTakesEndpointOutAtOnce(t *testing.T) {
	f := newFixture(t, 2, Config{})
	e := (*f.bal.eps.Load())[f.scs[1]]
	f.bal.onProbe(e, proto.PongDraining, nil)
	if f.in(1) || f.stats(1).State != Draining {
		t.Fatalf("a draining PONG left the endpoint in (%v)", f.stats(1).State)
	}
	// With nothing else left, the draining one is handed over.
	f.bal.onProbe((*f.bal.eps.Load())[f.scs[0]], 0, errors.New("x"))
	for range 2 {
		f.bal.onProbe((*f.bal.eps.Load())[f.scs[0]], 0, errors.New("x"))
	}
	if got := f.rec.handed(); len(got) != 1 || got[0] != f.scs[1] {
		t.Fatalf("only a draining endpoint and an unhealthy one: handed %v, want the draining one", got)
	}
	f.bal.onProbe(e, proto.PongServing, nil)
	if !f.in(1) || f.stats(1).State != Healthy {
		t.Fatalf("a serving PONG did not bring it back (%v)", f.stats(1).State)
	}
}

// 5 failures in a row eject; the first failure's time is recorded.
func TestConsecutiveFailuresEject(t *testing.T) {
	f := newFixture(t, 3, Config{})
	f.fail(0, 4)
	f.ok(0) // a success ends the run
	f.fail(0, 4)
	f.bal.process()
	if !f.in(0) {
		t.Fatal("ejected after runs of 4 failures")
	}
	first := f.now.Load()
	f.advance(3 * time.Millisecond)
	f.fail(0, 1)
	f.advance(7 * time.Millisecond)
	f.bal.process()
	st := f.stats(0)
	if f.in(0) || st.State != Ejected || st.Reason != ReasonConsecutive || st.Ejections != 1 {
		t.Fatalf("after 5 failures in a row: in %v, %+v", f.in(0), st)
	}
	if got := st.EjectedAt.Sub(st.FirstFailure); got != 10*time.Millisecond {
		t.Errorf("ejected %v after the first failure of the run, want 10ms (first at %v)", got, wall(first))
	}
}

// An ICMP unreachable ejects at once; OVERLOADED counts as a failure,
// RATE_LIMITED does not.
func TestFailureKinds(t *testing.T) {
	f := newFixture(t, 20, Config{MaxEjectedFraction: 1})
	f.done(0, runtime.AttemptResult{Err: syscall.ECONNREFUSED})
	for range 5 {
		f.done(1, runtime.AttemptResult{Answered: true, Status: proto.StatusOverloaded})
		f.done(2, runtime.AttemptResult{Answered: true, Status: proto.StatusRateLimited})
		f.done(3, runtime.AttemptResult{Answered: true, Status: proto.StatusInternal})
		f.done(4, runtime.AttemptResult{Answered: true, Status: proto.StatusDeadlineExceeded})
		f.done(5, runtime.AttemptResult{Answered: true, Status: proto.StatusUnknownMethod})
		f.done(6, runtime.AttemptResult{Answered: true, Status: 17}) // the application's
	}
	f.bal.process()
	want := map[int]bool{0: false, 1: false, 2: true, 3: false, 4: false, 5: true, 6: true}
	for i, in := range want {
		if f.in(i) != in {
			t.Errorf("endpoint %d: handed over %v, want %v (%+v)", i, f.in(i), in, f.stats(i))
		}
	}
	if st := f.stats(0); st.Reason != ReasonUnreachable {
		t.Errorf("ECONNREFUSED: reason %q, want %q", st.Reason, ReasonUnreachable)
	}
}

// Ejections last 1 s, 2 s, 4 s …; each ends in probation with one trial
// call, whose result decides; health forgives one ejection per 10 s.
func TestEjectionBackoffAndProbation(t *testing.T) {
	f := newFixture(t, 3, Config{})
	f.done(0, runtime.AttemptResult{Err: syscall.ECONNREFUSED})
	f.bal.process()
	for n, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		f.advance(want - time.Millisecond)
		f.bal.process()
		if f.in(0) || f.stats(0).State != Ejected {
			t.Fatalf("ejection %d: over before %v", n+1, want)
		}
		f.advance(time.Millisecond)
		f.bal.process()
		if st := f.stats(0); st.State != Probation || f.in(0) {
			t.Fatalf("ejection %d: after %v state %v, handed %v; want probation, not handed over", n+1, want, st.State, f.in(0))
		}
		// One trial call, then the inner picker's choice again.
		if sc := f.pick(); sc != f.scs[0] {
			t.Fatalf("probation: first pick %v, want the endpoint on trial", sc.Addr())
		}
		for range 10 {
			if sc := f.pick(); sc == f.scs[0] {
				t.Fatal("probation: a second call while the trial is pending")
			}
		}
		f.fail(0, 1)
		f.bal.process()
		if st := f.stats(0); st.State != Ejected || st.Ejections != uint64(n+2) {
			t.Fatalf("failed trial %d: %+v; want ejected again", n+1, st)
		}
	}
	// The fourth ejection: 8 s. Then a trial that passes.
	f.advance(8 * time.Second)
	f.bal.process()
	if f.pick() != f.scs[0] {
		t.Fatal("no trial after the fourth ejection")
	}
	f.ok(0)
	f.bal.process()
	if st := f.stats(0); st.State != Healthy || !f.in(0) || st.Multiplier != 4 {
		t.Fatalf("passed trial: %+v, handed %v; want healthy with multiplier 4", st, f.in(0))
	}
	f.advance(decayInterval)
	f.bal.process()
	if m := f.stats(0).Multiplier; m != 3 {
		t.Errorf("after 10 s healthy the multiplier is %d, want 3", m)
	}
	// Ejected again now: 8 s (multiplier 4), not 16 s.
	f.done(0, runtime.AttemptResult{Err: syscall.ECONNREFUSED})
	f.bal.process()
	f.advance(8 * time.Second)
	f.bal.process()
	if st := f.stats(0); st.State != Probation {
		t.Errorf("the fifth ejection after a decay: %v after 8 s, want probation", st.State)
	}
}

// A trial that never gets a result opens another after ProbationTimeout.
func TestProbationTimeout(t *testing.T) {
	f := newFixture(t, 2, Config{})
	f.done(0, runtime.AttemptResult{Err: syscall.ECONNREFUSED})
	f.bal.process()
	f.advance(time.Second)
	f.bal.process()
	if f.pick() != f.scs[0] {
		t.Fatal("no trial")
	}
	f.advance(DefaultProbationTimeout - time.Millisecond)
	f.bal.process()
	if f.pick() == f.scs[0] {
		t.Fatal("a second trial before the probation timeout")
	}
	f.advance(time.Millisecond)
	f.bal.process()
	if f.pick() != f.scs[0] {
		t.Fatal("no second trial after the probation timeout")
	}
}

// At most 10 % of the endpoints (at least one) are ejected at a time for
// their failures; an ICMP unreachable is not capped (nothing is there).
func TestEjectionCap(t *testing.T) {
	for _, tc := range []struct{ n, out int }{{3, 1}, {10, 1}, {30, 3}} {
		f := newFixture(t, tc.n, Config{})
		for i := range tc.n {
			f.fail(i, DefaultConsecutiveFailures)
		}
		f.bal.process()
		out, refused := 0, uint64(0)
		for i := range tc.n {
			st := f.stats(i)
			if st.State == Ejected {
				out++
			}
			refused += st.CapRefused
		}
		if out != tc.out || refused != uint64(tc.n-tc.out) {
			t.Errorf("%d endpoints all failing: %d ejected, %d refused by the cap; want %d and %d", tc.n, out, refused, tc.out, tc.n-tc.out)
		}
	}
	f := newFixture(t, 3, Config{})
	f.fail(0, DefaultConsecutiveFailures)
	f.done(1, runtime.AttemptResult{Err: syscall.ECONNREFUSED})
	f.bal.process()
	if f.stats(0).State != Ejected || f.stats(1).State != Ejected {
		t.Errorf("one ejected for failures, one unreachable: %v, %v; want both ejected", f.stats(0).State, f.stats(1).State)
	}
}

// Under 50 % success over a window of ≥ 20 attempts ejects, without 5
// failures in a row.
func TestSuccessRateEjection(t *testing.T) {
	f := newFixture(t, 3, Config{})
	// At most two failures in a row in each pattern (F fail, O ok).
	pattern := func(i int, p string) {
		for _, c := range p {
			if c == 'F' {
				f.fail(i, 1)
			} else {
				f.ok(i)
			}
		}
	}
	pattern(0, strings.Repeat("FO", 9)+"FF") // 11 of 20 fail: 45 % success
	pattern(1, strings.Repeat("FO", 10))     // 50 %
	pattern(2, strings.Repeat("FFO", 6)+"O") // 37 % of 19: too few attempts
	f.bal.process()
	if !f.in(0) {
		t.Fatal("ejected before the window ended")
	}
	f.advance(DefaultSuccessRateWindow)
	f.bal.process()
	if st := f.stats(0); st.State != Ejected || st.Reason != ReasonSuccessRate {
		t.Errorf("45 %% success over 20: %+v; want ejected for its success rate", st)
	}
	if f.stats(1).State != Healthy || f.stats(2).State != Healthy {
		t.Errorf("50 %% of 20 and 37 %% of 19: %v, %v; want both healthy", f.stats(1).State, f.stats(2).State)
	}
}

// With every endpoint failing probes, all are handed over (panic mode).
func TestPanicModeHandsOverAll(t *testing.T) {
	f := newFixture(t, 3, Config{})
	for _, sc := range f.scs {
		e := (*f.bal.eps.Load())[sc]
		for range 3 {
			f.bal.onProbe(e, 0, errors.New("no PONG"))
		}
	}
	if got := f.rec.handed(); len(got) != 3 {
		t.Fatalf("all unhealthy: %d handed over, want all 3 (panic mode)", len(got))
	}
}

func TestDoneAndPickAllocateNothing(t *testing.T) {
	f := newFixture(t, 4, Config{})
	f.done(3, runtime.AttemptResult{Err: syscall.ECONNREFUSED})
	f.bal.process()
	f.advance(time.Second)
	f.bal.process() // 3 on probation: the picker has a trial to check
	p := f.bal.pickerForTest()
	ok := &runtime.AttemptResult{Answered: true, RTT: time.Microsecond}
	bad := &runtime.AttemptResult{Err: runtime.ErrNoReply}
	info := &runtime.PickInfo{}
	i := 0
	if n := testing.AllocsPerRun(2000, func() {
		sc, _ := p.Pick(info)
		f.bal.Done(sc, ok)
		if i++; i%7 == 0 {
			f.bal.Done(f.scs[1], bad)
		}
	}); n != 0 {
		t.Errorf("%v allocations per Pick+Done", n)
	}
}

func TestWrapNamesTheBadField(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Jitter: 1}, "Jitter"},
		{Config{Interval: time.Second, Timeout: 2 * time.Second}, "Timeout"},
		{Config{SuccessRateMin: 2}, "SuccessRateMin"},
		{Config{BaseEjection: time.Minute, MaxEjection: time.Second}, "MaxEjection"},
		{Config{MaxEjectedFraction: 1.5}, "MaxEjectedFraction"},
	} {
		if _, err := Wrap(&recorder{}, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Wrap(%+v): %v; want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	if _, err := Wrap(nil, Config{}); err == nil {
		t.Error("Wrap(nil) succeeded")
	}
}

// Real probes against real servers on loopback: a server that shuts down
// with a drain delay is out as soon as a PONG says draining, well before
// its port closes; a port nobody serves goes unhealthy after three failed
// probes.
func TestActiveProbesAgainstRealServers(t *testing.T) {
	var servers []*runtime.Server
	var eps []runtime.Endpoint
	for range 2 {
		srv := startServer(t, runtime.WithDrainDelay(time.Second))
		servers = append(servers, srv)
		eps = append(eps, runtime.Endpoint{Addr: srv.Addr()})
	}
	dead := closedPort(t)
	eps = append(eps, runtime.Endpoint{Addr: dead})
	rec := &recorder{}
	b, err := Wrap(rec, Config{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	cli, err := runtime.DialService("test.Probe", runtime.WithEngine(eng), runtime.WithResolver(static.New(eps...)), runtime.WithBalancer(b))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	state := func(addr netip.AddrPort) (EndpointStats, bool) {
		for _, st := range b.Stats() {
			if st.Addr == addr {
				return st, slices.ContainsFunc(rec.handed(), func(sc *runtime.SubConn) bool { return sc.Addr() == addr })
			}
		}
		return EndpointStats{}, false
	}
	waitUntil := func(what string, cond func() bool) time.Duration {
		start := time.Now()
		for !cond() {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}
	took := waitUntil("the closed port to go unhealthy", func() bool { st, in := state(dead); return st.State == Unhealthy && !in })
	t.Logf("a closed port went unhealthy %v after the client started (3 probes 50 ms apart)", took.Round(time.Millisecond))
	if st, in := state(servers[0].Addr()); st.State != Healthy || !in || st.ProbesOK == 0 {
		t.Fatalf("a serving server: %+v, handed %v", st, in)
	}
	drained := make(chan time.Time, 1)
	start := time.Now()
	go func() {
		servers[1].Shutdown(context.Background())
		drained <- time.Now()
	}()
	took = waitUntil("the draining server to leave", func() bool { st, in := state(servers[1].Addr()); return st.State == Draining && !in })
	closedAt := <-drained
	t.Logf("draining server out %v after Shutdown began; its port closed %v after that", took.Round(time.Millisecond), closedAt.Sub(start).Round(time.Millisecond))
	if closedAt.Sub(start) < took {
		t.Errorf("the draining server left the picker only after its port closed")
	}
}

// startServer starts an io_uring server on loopback with no methods
// (PINGs are answered by the runtime), shut down at the end of the test
// if the test has not done it.
func startServer(t *testing.T, opts ...runtime.Option) *runtime.Server {
	t.Helper()
	opts = append([]runtime.Option{runtime.WithBackend(runtime.BackendUring), runtime.WithBusyPoll(0), runtime.WithLogger(quiet)}, opts...)
	srv, err := runtime.Listen("udp", "127.0.0.1:0", opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv
}

// closedPort is a loopback UDP port nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return ap
}

// The first failure of a run probes at once: against a port that closed,
// the PING's ICMP unreachable ejects the endpoint long before the next
// regular probe (10 s away here) or four more failures.
func TestFailureProbesAtOnce(t *testing.T) {
	srv := startServer(t)
	other := closedPort(t)
	rec := &recorder{}
	b, err := Wrap(rec, Config{Interval: 10 * time.Second, Timeout: time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	cli, err := runtime.DialService("test.Suspect", runtime.WithEngine(eng),
		runtime.WithResolver(static.New(runtime.Endpoint{Addr: srv.Addr()}, runtime.Endpoint{Addr: other})), runtime.WithBalancer(b))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for len(rec.handed()) != 2 {
		time.Sleep(time.Millisecond)
	}
	srv.Shutdown(context.Background())
	var bal *balancer
	b.mu.Lock()
	for x := range b.balancers {
		bal = x
	}
	b.mu.Unlock()
	var sc *runtime.SubConn
	for _, s := range cli.Endpoints() {
		if s.Addr() == srv.Addr() {
			sc = s
		}
	}
	start := time.Now()
	bal.Done(sc, &runtime.AttemptResult{Err: runtime.ErrNoReply}) // a timeout: says nothing yet
	for {
		st := b.Stats()
		i := slices.IndexFunc(st, func(s EndpointStats) bool { return s.Addr == srv.Addr() })
		if st[i].State == Ejected {
			if st[i].Reason != ReasonUnreachable {
				t.Errorf("ejected for %q, want %q", st[i].Reason, ReasonUnreachable)
			}
			t.Logf("one timeout, then the probe it caused: ejected %v after the failure", st[i].EjectedAt.Sub(st[i].FirstFailure))
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("not ejected 5 s after a failure against a closed port: %+v", st[i])
		}
		time.Sleep(time.Millisecond)
	}
}

// pushResolver hands the client whatever set the test pushes.
type pushResolver struct {
	mu sync.Mutex
	cc runtime.ResolverConn
	// first is pushed from Build.
	first []runtime.Endpoint
}

func (r *pushResolver) Build(_ string, cc runtime.ResolverConn) (runtime.Resolver, error) {
	r.mu.Lock()
	r.cc = cc
	r.mu.Unlock()
	cc.UpdateState(runtime.ResolverState{Endpoints: r.first})
	return r, nil
}

func (r *pushResolver) push(eps ...runtime.Endpoint) {
	r.mu.Lock()
	cc := r.cc
	r.mu.Unlock()
	cc.UpdateState(runtime.ResolverState{Endpoints: eps})
}

func (r *pushResolver) ResolveNow() {}
func (r *pushResolver) Close()      {}

// probers is how many probe goroutines run now, in every balancer of the
// test binary (the tests of this package do not run in parallel).
func probers() int { return leak.Goroutines("health.(*balancer).probe") }

// An endpoint discovery first calls unhealthy and later serving is probed
// from then on: its server dying is seen by the prober. Discovery calling
// it unhealthy again, or dropping it, stops the prober.
func TestProberFollowsDiscoveryHealth(t *testing.T) {
	srv, other := startServer(t), startServer(t)
	if n := probers(); n != 0 {
		t.Fatalf("%d probe goroutines before the test", n)
	}
	serving := runtime.Endpoint{Addr: srv.Addr()}
	unhealthy := runtime.Endpoint{Addr: srv.Addr(), Health: runtime.HealthUnhealthy}
	stay := runtime.Endpoint{Addr: other.Addr()}
	res := &pushResolver{first: []runtime.Endpoint{unhealthy, stay}}
	rec := &recorder{}
	b, err := Wrap(rec, Config{Interval: 20 * time.Millisecond, Timeout: 15 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := runtime.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	cli, err := runtime.DialService("test.Rediscover", runtime.WithEngine(eng), runtime.WithResolver(res), runtime.WithBalancer(b))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			cli.Close()
		}
	}()
	state := func(addr netip.AddrPort) (EndpointStats, bool) {
		for _, st := range b.Stats() {
			if st.Addr == addr {
				return st, true
			}
		}
		return EndpointStats{}, false
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > 5*time.Second {
				st, _ := state(srv.Addr())
				t.Fatalf("timed out waiting for %s: %+v, %d probe goroutines", what, st, probers())
			}
			time.Sleep(time.Millisecond)
		}
		t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
	}
	// One prober (two goroutines: the loop and its canceller) for the
	// serving endpoint only.
	waitUntil("the serving endpoint probed", func() bool { st, _ := state(other.Addr()); return st.ProbesOK > 0 })
	perEndpoint := probers()
	if perEndpoint == 0 {
		t.Fatal("no probe goroutines for the serving endpoint")
	}
	if st, _ := state(srv.Addr()); st.ProbesOK+st.ProbesFailed != 0 {
		t.Fatalf("an endpoint discovery calls unhealthy was probed: %+v", st)
	}

	res.push(serving, stay)
	waitUntil("the endpoint now serving probed", func() bool { st, _ := state(srv.Addr()); return st.ProbesOK > 0 })
	if n := probers(); n != 2*perEndpoint {
		t.Errorf("%d probe goroutines for 2 serving endpoints, want %d", n, 2*perEndpoint)
	}
	// Its server dies; no call goes to it, so only the prober can tell.
	srv.Shutdown(context.Background())
	waitUntil("the dead server out", func() bool {
		st, _ := state(srv.Addr())
		return st.ProbesFailed > 0 && (st.State == Ejected || st.State == Unhealthy) && !slices.ContainsFunc(rec.handed(), func(sc *runtime.SubConn) bool { return sc.Addr() == srv.Addr() })
	})

	// Unhealthy again: its prober stops; serving again: it starts again.
	res.push(unhealthy, stay)
	waitUntil("the prober of the endpoint now unhealthy stopped", func() bool { return probers() == perEndpoint })
	st, _ := state(srv.Addr())
	res.push(serving, stay)
	waitUntil("the prober restarted", func() bool {
		now, _ := state(srv.Addr())
		return now.ProbesOK+now.ProbesFailed > st.ProbesOK+st.ProbesFailed
	})
	if n := probers(); n != 2*perEndpoint {
		t.Errorf("%d probe goroutines after the endpoint turned serving again, want %d", n, 2*perEndpoint)
	}
	// Dropped by discovery: its prober stops; the other's goes on.
	res.push(stay)
	waitUntil("the prober of the dropped endpoint stopped", func() bool { return probers() == perEndpoint })
	if _, ok := state(srv.Addr()); ok {
		t.Error("the dropped endpoint still has stats")
	}
	cli.Close()
	closed = true
	waitUntil("every prober stopped after Close", func() bool { return probers() == 0 })
}
