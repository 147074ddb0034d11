package kubernetes

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	kwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/mesh/discovery/internal/conntest"
	"github.com/zerohop/zerohop/runtime"
)

func TestMain(m *testing.M) { leak.Main(m) }

// wait bounds each wait; client-go's relist after a broken watch backs off
// up to a few seconds, so it is generous.
const wait = 20 * time.Second

var addrsAre = conntest.AddrsAre

func gwirSlice(name string, typ discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return slice(name, typ, []discoveryv1.EndpointPort{port("gwir", 7000)}, eps...)
}

func start(t *testing.T, cs *fake.Clientset, opts ...Option) (*conntest.Recorder, *Builder, runtime.Resolver) {
	t.Helper()
	b, err := NewBuilder(cs, "ns", append([]Option{WithPort("gwir"), WithServiceName(func(s string) string {
		return strings.ToLower(strings.TrimPrefix(s, "pkg."))
	})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	rec, r := conntest.Build(t, b, "pkg.Echo")
	return rec, b, r
}

func TestInformerFollowsAddUpdateDelete(t *testing.T) {
	ctx := t.Context()
	existing := gwirSlice("echo-a", discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}})
	cs := fake.NewClientset(existing)
	slicesAPI := cs.DiscoveryV1().EndpointSlices("ns")
	rec, b, _ := start(t, cs)
	rec.Wait(t, wait, "the slice listed at start", addrsAre("10.0.0.1:7000"))

	// Add: the IPv6 half of a dual-stack Service.
	if _, err := slicesAPI.Create(ctx, gwirSlice("echo-b", discoveryv1.AddressTypeIPv6,
		discoveryv1.Endpoint{Addresses: []string{"fd00::2"}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "the added IPv6 slice", addrsAre("10.0.0.1:7000", "[fd00::2]:7000"))

	// Update: the IPv4 pod starts terminating and a second pod is ready.
	updated := gwirSlice("echo-a", discoveryv1.AddressTypeIPv4,
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, Conditions: conds(ptr(false), ptr(true), ptr(true))},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.3"}, Zone: ptr("eu-1b")})
	if _, err := slicesAPI.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "the updated slice", addrsAre("10.0.0.1:7000", "10.0.0.3:7000", "[fd00::2]:7000"))
	last, _ := rec.Snapshot().Last()
	if h := last.Endpoints[0].Health; h != runtime.HealthDraining {
		t.Fatalf("terminating endpoint is %v, want draining", h)
	}
	if z := last.Endpoints[1].Zone; z != "eu-1b" {
		t.Fatalf("zone %q, want eu-1b", z)
	}

	// Another Service's slice in the namespace changes nothing.
	foreign := gwirSlice("web-a", discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.9"}})
	foreign.Labels[discoveryv1.LabelServiceName] = "web"
	if _, err := slicesAPI.Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Delete.
	if err := slicesAPI.Delete(ctx, "echo-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "the deleted slice gone", addrsAre("[fd00::2]:7000"))
	if err := slicesAPI.Delete(ctx, "echo-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, wait, "no endpoints left", addrsAre())
	if errs := rec.Snapshot().Errors; len(errs) != 0 {
		t.Fatalf("errors reported: %v", errs)
	}
	for _, s := range rec.Snapshot().States {
		for _, ep := range s.Endpoints {
			if ep.Addr.Addr().String() == "10.0.0.9" {
				t.Fatalf("another Service's endpoint %v was pushed", ep.Addr)
			}
		}
	}
	if st := b.Stats(); st.Updates < 5 || st.Rebuilds < st.Updates {
		t.Fatalf("stats %+v", st)
	}
}

func TestMissingPortIsReported(t *testing.T) {
	cs := fake.NewClientset(slice("echo-a", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{port("http", 80)},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}}))
	rec, _, _ := start(t, cs)
	rec.Wait(t, wait, "an empty state and an error", func(s conntest.Snapshot) bool { return len(s.Errors) == 1 && len(s.States) == 1 })
	err := rec.Snapshot().Errors[0]
	if msg := err.Error(); !strings.Contains(msg, `"gwir"`) || !strings.Contains(msg, `"http"`) || !strings.Contains(msg, "ns/echo") {
		t.Fatalf("error %q should name the Service, the wanted port and the ports it has", msg)
	}
}

// A list that fails (API server gone, RBAC) is reported once, the last
// endpoints stay, and the informer's own retry brings a fresh state.
func TestListFailureIsReportedAndRecovered(t *testing.T) {
	cs := fake.NewClientset(gwirSlice("echo-a", discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}}))
	var failing atomic.Bool
	cs.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, kruntime.Object, error) {
		if failing.Load() {
			return true, nil, errors.New("connection refused (test)")
		}
		return false, nil, nil
	})
	// Watches the test can end, to make the informer list again.
	watches := make(chan *kwatch.FakeWatcher, 16)
	cs.PrependWatchReactor("endpointslices", func(k8stesting.Action) (bool, kwatch.Interface, error) {
		w := kwatch.NewFake()
		watches <- w
		return true, w, nil
	})
	rec, b, _ := start(t, cs)
	rec.Wait(t, wait, "the first state", addrsAre("10.0.0.1:7000"))

	failing.Store(true)
	select {
	case w := <-watches:
		w.Stop()
	case <-time.After(wait):
		t.Fatal("the informer never watched")
	}
	took := rec.Wait(t, wait, "the failed list reported", func(s conntest.Snapshot) bool { return len(s.Errors) == 1 })
	t.Logf("a failed list was reported %v after the watch broke", took)
	if !strings.Contains(rec.Snapshot().Errors[0].Error(), "connection refused (test)") {
		t.Fatalf("reported %v", rec.Snapshot().Errors[0])
	}
	states := len(rec.Snapshot().States)
	for deadline := time.Now().Add(wait); b.Stats().WatchErrors < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the informer did not retry the list: %+v", b.Stats())
		}
	}
	if snap := rec.Snapshot(); len(snap.Errors) != 1 || len(snap.States) != states {
		t.Fatalf("while failing: %d errors (want 1), %d states (had %d)", len(snap.Errors), len(snap.States), states)
	}

	failing.Store(false)
	rec.Wait(t, wait, "a fresh state after recovery", func(s conntest.Snapshot) bool {
		return len(s.States) > states && slices.Equal(s.LastAddrs(), []string{"10.0.0.1:7000"})
	})
}

func TestCloseStopsTheInformer(t *testing.T) {
	cs := fake.NewClientset()
	b, err := NewBuilder(cs, "ns", WithServiceName(func(string) string { return "echo" }), WithPort("gwir"))
	if err != nil {
		t.Fatal(err)
	}
	rec, r := conntest.Build(t, b, "pkg.Echo")
	rec.Wait(t, wait, "the empty first state", addrsAre())
	r.Close()
	rebuilds := b.Stats().Rebuilds
	if _, err := cs.DiscoveryV1().EndpointSlices("ns").Create(context.Background(),
		gwirSlice("echo-a", discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a running informer delivers an add in well under this
	if n := len(rec.Snapshot().States); n != 1 || b.Stats().Rebuilds != rebuilds {
		t.Fatalf("after Close: %d states, %d rebuilds", n, b.Stats().Rebuilds-rebuilds)
	}
}

func TestNewBuilderNamesTheFix(t *testing.T) {
	if _, err := NewBuilder(nil, "ns"); err == nil || !strings.Contains(err.Error(), "InClusterConfig") {
		t.Errorf("nil client: %v", err)
	}
	if _, err := NewBuilder(fake.NewClientset(), ""); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("empty namespace: %v", err)
	}
	b, err := NewBuilder(fake.NewClientset(), "ns", WithServiceName(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build("pkg.Echo", conntest.New()); err == nil || !strings.Contains(err.Error(), "WithServiceName") {
		t.Errorf("empty mapped name: %v", err)
	}
	b, err = NewBuilder(fake.NewClientset(), "ns")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build("pkg Echo,x", conntest.New()); err == nil || !strings.Contains(err.Error(), "WithServiceName") {
		t.Errorf("a name that cannot be a label value: %v", err)
	}
}
