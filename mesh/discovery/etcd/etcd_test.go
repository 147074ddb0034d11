package etcd_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/mesh/discovery/etcd"
	"github.com/zerohop/zerohop/mesh/discovery/etcd/etcdtest"
	"github.com/zerohop/zerohop/mesh/discovery/internal/conntest"
	"github.com/zerohop/zerohop/runtime"
)

func TestMain(m *testing.M) { leak.Main(m) }

// wait bounds waits for things that take a few requests; lease expiries
// and outages get their own bounds from the TTL.
const wait = 10 * time.Second

const service = "pkg.Echo"

func ep(addr string) runtime.Endpoint { return runtime.Endpoint{Addr: netip.MustParseAddrPort(addr)} }

// logs keeps what a Registry logged, for checking its warnings.
type logs struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

// warnings returns the messages logged at WARN.
func (l *logs) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level == slog.LevelWarn {
			out = append(out, r.Message)
		}
	}
	return out
}

func newRegistry(t *testing.T, cli *clientv3.Client, opts ...etcd.Option) (*etcd.Registry, *logs) {
	t.Helper()
	l := new(logs)
	reg, err := etcd.NewRegistry(cli, append([]etcd.Option{etcd.WithLogger(slog.New(l))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return reg, l
}

// startRegistry starts an embedded etcd and a registry on a client of it.
func startRegistry(t *testing.T, opts ...etcd.Option) (*etcdtest.Embedded, *clientv3.Client, *etcd.Registry, *logs) {
	t.Helper()
	srv := etcdtest.StartEmbedded(t)
	cli := etcdtest.Client(t, srv.Endpoint)
	reg, l := newRegistry(t, cli, opts...)
	return srv, cli, reg, l
}

func register(t *testing.T, reg *etcd.Registry, e runtime.Endpoint) runtime.Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	g, err := reg.Register(ctx, service, e)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Deregister(context.Background()) })
	return g
}

func resolve(t *testing.T, cli *clientv3.Client, opts ...etcd.Option) (*conntest.Recorder, *etcd.Builder, runtime.Resolver) {
	t.Helper()
	b, err := etcd.NewBuilder(cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	rec, r := conntest.Build(t, b, service)
	return rec, b, r
}

var addrsAre = conntest.AddrsAre

// until polls cond, bounded by limit, and returns how long it took.
func until(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("waited %v for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// keyLease returns the lease of key in etcd, 0 when the key is absent.
func keyLease(t *testing.T, cli *clientv3.Client, key string) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

func TestRegisterThenResolve(t *testing.T) {
	_, cli, reg, _ := startRegistry(t)
	want := runtime.Endpoint{Addr: netip.MustParseAddrPort("10.0.0.1:7000"), Weight: 3, Zone: "eu-1a", Version: "1.4.2",
		Health: runtime.HealthDraining, Attributes: map[string]string{"pod": "echo-1"}}
	register(t, reg, want)

	// The documented layout, read back raw.
	key := "/zerohop/services/pkg.Echo/10.0.0.1:7000"
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %d keys", key, err, len(resp.Kvs))
	}
	var raw map[string]any
	if err := json.Unmarshal(resp.Kvs[0].Value, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["addr"] != "10.0.0.1:7000" || raw["weight"] != 3.0 || raw["zone"] != "eu-1a" || raw["version"] != "1.4.2" || raw["health"] != "draining" {
		t.Fatalf("value %s does not follow the documented layout", resp.Kvs[0].Value)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.GrantedTTL != 3 || ttl.TTL <= 0 {
		t.Fatalf("lease of %s: %+v, %v; want a live lease granted for 3 s", key, ttl, err)
	}

	rec, b, _ := resolve(t, cli)
	rec.Wait(t, wait, "the registered endpoint", addrsAre("10.0.0.1:7000"))
	last, _ := rec.Snapshot().Last()
	got := last.Endpoints[0]
	if got.Weight != 3 || got.Zone != "eu-1a" || got.Version != "1.4.2" || got.Health != runtime.HealthDraining ||
		got.Attributes["pod"] != "echo-1" || got.Attributes[etcd.AttrKey] != key {
		t.Fatalf("resolved %+v", got)
	}
	if st := reg.Stats(); st.Registrations != 1 || st.Failures != 0 {
		t.Fatalf("registry stats %+v", st)
	}
	if st := b.Stats(); st.Gets != 1 || st.Updates != 1 || st.Errors != 0 {
		t.Fatalf("resolver stats %+v", st)
	}
}

func TestDeregisterRemovesAtOnce(t *testing.T) {
	_, cli, reg, _ := startRegistry(t)
	a := register(t, reg, ep("10.0.0.1:7000"))
	register(t, reg, ep("[fd00::2]:7000"))
	rec, _, _ := resolve(t, cli)
	rec.Wait(t, wait, "both endpoints", addrsAre("10.0.0.1:7000", "[fd00::2]:7000"))
	lease := keyLease(t, cli, etcd.Key(etcd.DefaultPrefix, service, netip.MustParseAddrPort("10.0.0.1:7000")))

	if err := a.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := rec.Wait(t, wait, "the withdrawn endpoint gone", addrsAre("[fd00::2]:7000"))
	t.Logf("a deregistered endpoint left the resolver's state %v after Deregister returned", took)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if ttl, err := cli.TimeToLive(ctx, lease); err != nil || ttl.TTL != -1 {
		t.Fatalf("the lease after Deregister: %+v, %v; want revoked (TTL -1)", ttl, err)
	}
	if err := a.Deregister(context.Background()); err != nil {
		t.Fatalf("a second Deregister: %v", err)
	}
}

func TestLeaseExpiryAfterRegisteringClientDies(t *testing.T) {
	srv, server, reg, logs := startRegistry(t)
	register(t, reg, ep("10.0.0.1:7000"))
	rec, _, _ := resolve(t, etcdtest.Client(t, srv.Endpoint))
	rec.Wait(t, wait, "the registered endpoint", addrsAre("10.0.0.1:7000"))

	// The server's process dies: its client goes without revoking.
	server.Close()
	start := time.Now()
	rec.Wait(t, 3*etcd.DefaultTTL+wait, "the dead server's endpoint gone", addrsAre())
	took := time.Since(start)
	t.Logf("lease expiry removed the endpoint %v after the registering client closed (TTL %v; the target is TTL + 1 s)", took, etcd.DefaultTTL)
	until(t, wait, "the registration to give up on its closed client", func() bool {
		return slices.Contains(logs.warnings(), "etcd: registration abandoned; the key goes when its lease expires")
	})
}

func TestNewRegistrationAppearsInRunningWatch(t *testing.T) {
	_, cli, reg, _ := startRegistry(t)
	rec, b, _ := resolve(t, cli)
	rec.Wait(t, wait, "the empty first state", addrsAre())
	register(t, reg, ep("10.0.0.1:7000"))
	took := rec.Wait(t, wait, "the new registration", addrsAre("10.0.0.1:7000"))
	register(t, reg, ep("10.0.0.2:7000"))
	rec.Wait(t, wait, "the second registration", addrsAre("10.0.0.1:7000", "10.0.0.2:7000"))
	t.Logf("a new registration reached a running resolver %v after Register returned", took)
	if st := b.Stats(); st.Gets != 1 {
		t.Fatalf("the watch re-got (%+v): it should have followed the events", st)
	}
}

func TestBadValueIsLeftOutAndReported(t *testing.T) {
	_, cli, reg, _ := startRegistry(t)
	register(t, reg, ep("10.0.0.1:7000"))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	badKey := etcd.ServicePrefix(etcd.DefaultPrefix, service) + "10.0.0.9:7000"
	if _, err := cli.Put(ctx, badKey, `{"addr":"10.0.0.9:7000","weight":-1}`); err != nil {
		t.Fatal(err)
	}
	rec, b, _ := resolve(t, cli)
	rec.Wait(t, wait, "the good endpoint", addrsAre("10.0.0.1:7000"))
	errs := rec.Snapshot().Errors
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), badKey) {
		t.Fatalf("errors %v, want one naming %s", errs, badKey)
	}
	// Mended in place: the watch picks it up.
	if _, err := cli.Put(ctx, badKey, `{"addr":"10.0.0.9:7000","weight":1}`); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "the mended endpoint", addrsAre("10.0.0.1:7000", "10.0.0.9:7000"))
	if st := b.Stats(); st.BadEntries != 1 {
		t.Fatalf("stats %+v, want 1 bad entry", st)
	}
}

func TestReRegistersAfterLeaseRevoked(t *testing.T) {
	srv, cli, reg, logs := startRegistry(t)
	register(t, reg, ep("10.0.0.1:7000"))
	key := etcd.Key(etcd.DefaultPrefix, service, netip.MustParseAddrPort("10.0.0.1:7000"))
	first := keyLease(t, cli, key)

	// An operator (or etcd losing the session) revokes the lease: the key
	// goes, and the registration must put it back with a new lease.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := etcdtest.Client(t, srv.Endpoint).Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	took := until(t, wait, "the key back with a new lease", func() bool {
		l := keyLease(t, cli, key)
		return l != 0 && l != first
	})
	t.Logf("re-registered %v after the lease was revoked", took)
	if st := reg.Stats(); st.LeasesLost != 1 || st.Registrations != 2 {
		t.Fatalf("stats %+v, want 1 lease lost and 2 registrations", st)
	}
	if !slices.Contains(logs.warnings(), "etcd: lease lost, registering again") {
		t.Fatalf("no WARN for the lost lease: %v", logs.warnings())
	}
}

func TestEtcdDownKeepsStateThenRegistrationComesBack(t *testing.T) {
	srv, regCli, reg, logs := startRegistry(t, etcd.WithRequestTimeout(500*time.Millisecond))
	register(t, reg, ep("10.0.0.1:7000"))
	key := etcd.Key(etcd.DefaultPrefix, service, netip.MustParseAddrPort("10.0.0.1:7000"))
	first := keyLease(t, regCli, key)
	rec, b, _ := resolve(t, etcdtest.Client(t, srv.Endpoint), etcd.WithRequestTimeout(500*time.Millisecond))
	rec.Wait(t, wait, "the registered endpoint", addrsAre("10.0.0.1:7000"))
	states := len(rec.Snapshot().States)

	stopping := time.Now()
	srv.Stop()
	stopped := time.Since(stopping)
	rec.Wait(t, wait, "an error for the unreachable etcd", func(s conntest.Snapshot) bool { return len(s.Errors) > 0 })
	t.Logf("the resolver reported etcd unreachable %v after etcd began to stop (stopping took %v; probe every %v): %v",
		rec.Snapshot().ErrorTimes[0].Sub(stopping), stopped, etcd.DefaultProbeInterval, rec.Snapshot().Errors[0])
	// The registration's keep-alives fail for a TTL, then it retries.
	until(t, 3*etcd.DefaultTTL+wait, "the registration to notice its lost lease", func() bool { return reg.Stats().LeasesLost > 0 })
	until(t, wait, "failed re-registration attempts", func() bool { return reg.Stats().Failures >= 2 })
	snap := rec.Snapshot()
	if len(snap.States) != states || !slices.Equal(snap.LastAddrs(), []string{"10.0.0.1:7000"}) {
		t.Fatalf("while etcd was down: %d states (had %d), last %v; want the last state kept", len(snap.States), states, snap.LastAddrs())
	}
	if n := len(snap.Errors); n != 1 {
		t.Fatalf("one outage reported %d times: %v", n, snap.Errors)
	}
	if st := b.Stats(); st.Errors < 2 || st.Reported != 1 {
		t.Fatalf("resolver stats %+v: want every failed probe counted, one reported", st)
	}
	if w := logs.warnings(); !slices.Contains(w, "etcd: registration failed, retrying") {
		t.Fatalf("no WARN for the failed attempts: %v", w)
	}

	srv.Start()
	took := until(t, 2*wait, "the registration back with a new lease", func() bool {
		l := keyLease(t, regCli, key)
		return l != 0 && l != first
	})
	t.Logf("re-registered %v after etcd restarted", took)
	rec.Wait(t, wait, "a fresh state after the outage", func(s conntest.Snapshot) bool {
		return len(s.States) > states && slices.Equal(s.LastAddrs(), []string{"10.0.0.1:7000"})
	})
	// etcd restores the old lease on restart; when it expires the key
	// must stay, attached to the new lease.
	until(t, 3*etcd.DefaultTTL+wait, "the old lease to expire", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ttl, err := regCli.TimeToLive(ctx, first)
		return err == nil && ttl.TTL == -1
	})
	if keyLease(t, regCli, key) == 0 {
		t.Fatal("the key went with the old lease")
	}
}

func TestRegisterRetriesUntilEtcdIsUp(t *testing.T) {
	srv := etcdtest.StartEmbedded(t)
	cli := etcdtest.Client(t, srv.Endpoint)
	srv.Stop()
	reg, logs := newRegistry(t, cli, etcd.WithRequestTimeout(300*time.Millisecond))

	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := reg.Register(short, service, ep("10.0.0.1:7000")); err == nil ||
		!strings.Contains(err.Error(), "pkg.Echo") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Register with etcd down and a 1 s context: %v", err)
	}

	type result struct {
		g   runtime.Registration
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*wait)
		defer cancel()
		g, err := reg.Register(ctx, service, ep("10.0.0.2:7000"))
		done <- result{g, err}
	}()
	failures := reg.Stats().Failures
	until(t, wait, "failed attempts while etcd is down", func() bool { return reg.Stats().Failures >= failures+2 })
	srv.Start()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	defer res.g.Deregister(context.Background())
	if keyLease(t, cli, etcd.Key(etcd.DefaultPrefix, service, netip.MustParseAddrPort("10.0.0.2:7000"))) == 0 {
		t.Fatal("Register returned but the key is not there")
	}
	if len(logs.warnings()) < 2 {
		t.Fatalf("warnings %v, want one per failed attempt", logs.warnings())
	}
}

func TestOptionsAreChecked(t *testing.T) {
	for name, opt := range map[string]etcd.Option{
		"WithTTL":            etcd.WithTTL(0),
		"WithPrefix":         etcd.WithPrefix(""),
		"WithRequestTimeout": etcd.WithRequestTimeout(-1),
		"WithProbeInterval":  etcd.WithProbeInterval(0),
		"WithBackoff":        etcd.WithBackoff(time.Second, time.Millisecond),
		"WithLogger":         etcd.WithLogger(nil),
	} {
		if _, err := etcd.NewRegistry(nil, opt); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the option", name, err)
		}
	}
	b, err := etcd.NewBuilder(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build("a/b", conntest.New()); err == nil {
		t.Error("Build accepted a service name with '/'")
	}
}
