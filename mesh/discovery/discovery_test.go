package discovery_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/mesh/discovery/internal/conntest"
	"github.com/zerohop/zerohop/runtime"
)

func ep(addr string) runtime.Endpoint {
	return runtime.Endpoint{Addr: netip.MustParseAddrPort(addr)}
}

func TestSetStateIsInKeyOrder(t *testing.T) {
	s := discovery.Set{"c": ep("10.0.0.3:1"), "a": ep("10.0.0.1:1"), "b": ep("10.0.0.2:1")}
	got := discovery.Set(s).State()
	var addrs []string
	for _, e := range got.Endpoints {
		addrs = append(addrs, e.Addr.String())
	}
	if want := []string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}; !slices.Equal(addrs, want) {
		t.Fatalf("State order %v, want %v", addrs, want)
	}
	if n := len(discovery.Set{}.State().Endpoints); n != 0 {
		t.Fatalf("empty set gave %d endpoints", n)
	}
}

func TestEqualComparesEveryField(t *testing.T) {
	base := runtime.Endpoint{Addr: netip.MustParseAddrPort("[fd00::1]:7"), Weight: 2, Zone: "z", Version: "v",
		Health: runtime.HealthDraining, Attributes: map[string]string{"k": "v"}}
	if !discovery.Equal(base, base) {
		t.Fatal("an endpoint differs from itself")
	}
	for name, mod := range map[string]func(*runtime.Endpoint){
		"addr":   func(e *runtime.Endpoint) { e.Addr = netip.MustParseAddrPort("[fd00::1]:8") },
		"weight": func(e *runtime.Endpoint) { e.Weight = 3 },
		"zone":   func(e *runtime.Endpoint) { e.Zone = "y" },
		"ver":    func(e *runtime.Endpoint) { e.Version = "w" },
		"health": func(e *runtime.Endpoint) { e.Health = runtime.HealthServing },
		"attrs":  func(e *runtime.Endpoint) { e.Attributes = map[string]string{"k": "w"} },
	} {
		other := base
		mod(&other)
		if discovery.Equal(base, other) {
			t.Errorf("%s: a changed endpoint compares equal", name)
		}
	}
}

func TestParseHealthRoundTrips(t *testing.T) {
	for _, h := range []runtime.EndpointHealth{runtime.HealthServing, runtime.HealthDraining, runtime.HealthUnhealthy} {
		got, err := discovery.ParseHealth(h.String())
		if err != nil || got != h {
			t.Errorf("ParseHealth(%q) = %v, %v", h.String(), got, err)
		}
	}
	if _, err := discovery.ParseHealth("Serving"); err == nil {
		t.Error("ParseHealth accepted a name with the wrong case")
	}
}

func TestValidService(t *testing.T) {
	for _, ok := range []string{"pkg.Service", "echo", "a-b_c.D"} {
		if err := discovery.ValidService(ok); err != nil {
			t.Errorf("ValidService(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", "a\nb", "a\x00"} {
		if err := discovery.ValidService(bad); err == nil {
			t.Errorf("ValidService(%q) accepted it", bad)
		}
	}
}

func TestConnDropsRepeatsUntilAnError(t *testing.T) {
	rec := conntest.New()
	var counters discovery.Counters
	c := discovery.NewConn(rec, &counters)
	one := discovery.Set{"a": ep("10.0.0.1:1")}
	if !c.Update(one.State()) {
		t.Fatal("first state not handed over")
	}
	if c.Update(one.State()) {
		t.Fatal("a repeated state was handed over")
	}
	c.Error(errors.New("source down"))
	if !c.Update(one.State()) {
		t.Fatal("the state after an error was not handed over")
	}
	two := discovery.Set{"a": ep("10.0.0.1:1"), "b": ep("10.0.0.2:1")}
	if !c.Update(two.State()) {
		t.Fatal("a changed state was not handed over")
	}
	c.Close()
	if c.Update(discovery.Set{}.State()) {
		t.Fatal("a state was handed over after Close")
	}
	c.Error(errors.New("after close"))
	snap := rec.Snapshot()
	if len(snap.States) != 3 || len(snap.Errors) != 1 {
		t.Fatalf("recorder got %d states and %d errors, want 3 and 1", len(snap.States), len(snap.Errors))
	}
	if st := counters.Stats(); st != (discovery.Stats{Updates: 3, Repeats: 1, Reported: 1}) {
		t.Fatalf("counters %+v", st)
	}
}

func TestBackoffIsBoundedJitteredAndGrows(t *testing.T) {
	b := discovery.Backoff{Base: 10 * time.Millisecond, Max: 160 * time.Millisecond}
	for round := 0; round < 2; round++ {
		for n := 0; n < 40; n++ {
			d := min(b.Max, b.Base<<min(n, 20))
			got := b.Next()
			if got < d/2 || got >= d {
				t.Fatalf("round %d failure %d: wait %v outside [%v, %v)", round, n, got, d/2, d)
			}
		}
		b.Reset()
	}
	// Jitter: many draws at the ceiling are not all the same.
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 waits took only %d distinct values", len(seen))
	}
	var zero discovery.Backoff
	if got := zero.Next(); got < discovery.DefaultBackoffBase/2 || got >= discovery.DefaultBackoffBase {
		t.Fatalf("zero Backoff's first wait %v, want in [%v, %v)", got, discovery.DefaultBackoffBase/2, discovery.DefaultBackoffBase)
	}
}

func TestSleepStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if discovery.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep ran out its hour on a cancelled context")
	}
	if !discovery.Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep of 1 ms reported a cancelled context")
	}
}

func TestResolverCloseWaitsAndStopsPushes(t *testing.T) {
	rec := conntest.New()
	nows := make(chan struct{}, 16)
	var pushed *discovery.Conn
	r := discovery.Start(rec, nil, func(ctx context.Context, r *discovery.Resolver) {
		pushed = r.Conn()
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.Now():
				nows <- struct{}{}
			}
		}
	})
	r.ResolveNow()
	select {
	case <-nows:
	case <-time.After(5 * time.Second):
		t.Fatal("ResolveNow never reached the watch function")
	}
	r.Close() // returns only once the watch function did
	r.Close()
	if pushed.Update(discovery.Set{"a": ep("10.0.0.1:1")}.State()) {
		t.Fatal("the Conn took a state after Close")
	}
	if n := len(rec.Snapshot().States); n != 0 {
		t.Fatalf("%d states reached the ResolverConn after Close", n)
	}
}
