package policy_test

import (
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/shed"
	"github.com/zerohop/zerohop/runtime"
)

// The overload scenario: a blocking method whose handler takes about a
// millisecond (it sleeps, like a call to a slow backend), on 4 workers
// with a queue of 4,096, offered 3× what the workers can do for 3 s by a
// kernel UDP client in another process.
const (
	overloadWorkers = 4
	overloadQueue   = 4096
	overloadFactor  = 3
	overloadSpan    = 3 * time.Second
)

type overloadResult struct {
	loadResult
	offeredPerSec     int
	unloadedP99, p99  time.Duration
	p50               time.Duration
	shed              *policy.ShedStat
	runtimeOverloaded uint64
}

func runOverload(t testing.TB, shedOn bool) overloadResult {
	cfg := policy.ServerConfig{Loops: 1}
	if shedOn {
		cfg.Shed = &shed.Config{}
	}
	pol := newPolicy(t, cfg)
	srv := startServer(t, nil, loopback().String(), pol, runtime.WithBackend(runtime.BackendUring),
		runtime.WithWorkers(overloadWorkers, overloadQueue))
	var res overloadResult
	res.unloadedP99 = load(t, loadSpec{Addr: srv.Addr().String(), Method: slowMethod, Count: 300}).quantile(0.99)
	// Each handler sleeps a little over 1 ms, so this is at least 3×.
	res.offeredPerSec = overloadFactor * overloadWorkers * int(time.Second/time.Millisecond)
	res.loadResult = load(t, loadSpec{Addr: srv.Addr().String(), Method: slowMethod, Rate: res.offeredPerSec, Span: overloadSpan})
	res.p50, res.p99 = res.quantile(0.5), res.quantile(0.99)
	res.runtimeOverloaded = srv.Stats().Total.Overloaded
	if shedOn {
		// One more call folds every completion into the shedder: then only
		// that call may be in flight, or a slot leaked.
		load(t, loadSpec{Addr: srv.Addr().String(), Method: slowMethod, Count: 1})
		res.shed = pol.Stats().Shed
	}
	return res
}

func (r overloadResult) log(t testing.TB, name string) {
	t.Logf("%s: offered %d/s for %v, %d sent: %d OK, %d OVERLOADED (%d by a full worker pool), %d other, %d unanswered; accepted p50 %v p99 %v, unloaded p99 %v (p99 %.1f× unloaded)",
		name, r.offeredPerSec, overloadSpan, r.Sent, r.OK, r.Overloaded, r.runtimeOverloaded, r.Other, r.Missing,
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.unloadedP99.Round(time.Microsecond),
		float64(r.p99)/float64(r.unloadedP99))
}

// With the shedder, the excess of a 3× overload is refused OVERLOADED with
// a RETRY_AFTER while every call is answered; without it (the control, in
// the same test) the worker queue grows. The p99s are measured and
// reported, not asserted: this is an ordinary test on a shared machine.
// BenchmarkOverloadP99 reports the same figures as metrics.
func TestOverloadIsShed(t *testing.T) {
	with := runOverload(t, true)
	with.log(t, "with shedding")
	without := runOverload(t, false)
	without.log(t, "without shedding")
	if with.Missing > 0 || without.Missing > 0 {
		t.Errorf("unanswered calls: %d with shedding, %d without", with.Missing, without.Missing)
	}
	if with.Overloaded == 0 {
		t.Errorf("the shedder refused nothing at %d× capacity", overloadFactor)
	}
	if with.NoRetryAfter > 0 {
		t.Errorf("%d OVERLOADED answers without RETRY_AFTER", with.NoRetryAfter)
	}
	if with.OK == 0 {
		t.Error("the shedder refused everything")
	}
	if with.Other > 0 {
		t.Errorf("%d answers other than OK and OVERLOADED with shedding", with.Other)
	}
	if s := with.shed; s == nil || s.InFlight > 1 || s.Refused == 0 {
		t.Errorf("shedder stats after the load %+v: want at most the last call in flight (a slot leaked otherwise) and refusals counted", s)
	}
}

// BenchmarkOverloadP99 runs the overload scenario with and without the
// shedder and reports the accepted calls' p99 of both
// (go test -run '^$' -bench OverloadP99 -benchtime 1x ./mesh/policy).
func BenchmarkOverloadP99(b *testing.B) {
	for b.Loop() {
		with := runOverload(b, true)
		without := runOverload(b, false)
		with.log(b, "with shedding")
		without.log(b, "without shedding")
		b.ReportMetric(float64(with.p99)/1e6, "p99-shed-ms")
		b.ReportMetric(float64(without.p99)/1e6, "p99-noshed-ms")
		b.ReportMetric(float64(with.unloadedP99)/1e6, "p99-unloaded-ms")
		b.ReportMetric(float64(with.Overloaded)/float64(with.Sent), "shed-fraction")
	}
}
