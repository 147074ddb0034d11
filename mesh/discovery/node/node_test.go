package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/mesh/discovery/internal/conntest"
	"github.com/zerohop/zerohop/mesh/discovery/node"
	"github.com/zerohop/zerohop/runtime"
)

func TestMain(m *testing.M) { leak.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// service is a name no other test on this host uses: the table is shared
// by every process of the kernel.
func service(t *testing.T) string {
	s := fmt.Sprintf("test.Node%d.%s", os.Getpid(), t.Name())
	return s[:min(bpf.NodeServiceMax, len(s))]
}

func builder(t *testing.T, opts ...node.Option) *node.Builder {
	t.Helper()
	topo.RequireRoot(t)
	b, err := node.NewBuilder(append([]node.Option{node.WithInterval(20 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A registration appears with its fields, a change of health follows, and
// Deregister removes it.
func TestRegisterResolveDeregister(t *testing.T) {
	b := builder(t)
	svc := service(t)
	rec, _ := conntest.Build(t, b, svc)
	rec.Wait(t, 5*time.Second, "the first (empty) state", conntest.AddrsAre())
	reg := node.NewRegistry(node.WithLogger(quiet))
	addr := netip.MustParseAddrPort("10.77.0.1:7000")
	g, err := reg.Register(context.Background(), svc, runtime.Endpoint{Addr: addr, Weight: 3, Zone: "z1", Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	took := rec.Wait(t, 5*time.Second, "the registration", conntest.AddrsAre(addr.String()))
	t.Logf("registration seen by the resolver after %v (listing every 20 ms)", took.Round(time.Millisecond))
	last, _ := rec.Snapshot().Last()
	ep := last.Endpoints[0]
	ns, _ := bpf.CurrentNetnsInode()
	if ep.Weight != 3 || ep.Zone != "z1" || ep.Version != "1.2.3" || ep.Health != runtime.HealthServing ||
		ep.Attributes[node.AttrPID] != fmt.Sprint(os.Getpid()) || ep.Attributes[node.AttrNetns] != fmt.Sprint(ns) {
		t.Errorf("endpoint %+v", ep)
	}
	if err := g.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	took = rec.Wait(t, 5*time.Second, "the deregistration", conntest.AddrsAre())
	t.Logf("deregistration seen after %v", took.Round(time.Millisecond))
	if err := g.Deregister(context.Background()); err != nil {
		t.Errorf("a second Deregister: %v", err)
	}
}

// A server that stops heartbeating (killed) is left out after
// bpf.NodeStaleAfter.
func TestStaleEntryLeftOut(t *testing.T) {
	b := builder(t)
	svc := service(t)
	rec, _ := conntest.Build(t, b, svc)
	tbl, err := bpf.OpenNodeTable(bpf.NodeOptions{HeartbeatInterval: -1}) // no heartbeats: as if killed
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	addr := netip.MustParseAddrPort("10.77.0.2:7000")
	if err := tbl.Register(bpf.NodeEndpoint{Service: svc, Addr: addr}); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, 5*time.Second, "the registration", conntest.AddrsAre(addr.String()))
	start := time.Now()
	rec.Wait(t, bpf.NodeStaleAfter+5*time.Second, "the stale entry to go", conntest.AddrsAre())
	t.Logf("an entry without heartbeats left the resolver's state %v after it was seen (NodeStaleAfter %v)",
		time.Since(start).Round(time.Millisecond), bpf.NodeStaleAfter)
}

// Draining and not-serving entries map to draining and unhealthy.
func TestHealthMapping(t *testing.T) {
	ns := uint64(42)
	entries := []bpf.NodeEndpoint{
		{Service: "s", Addr: netip.MustParseAddrPort("10.0.0.1:1"), Health: bpf.NodeServing, NetnsInode: ns},
		{Service: "s", Addr: netip.MustParseAddrPort("10.0.0.2:1"), Health: bpf.NodeDraining, NetnsInode: ns},
		{Service: "s", Addr: netip.MustParseAddrPort("10.0.0.3:1"), Health: bpf.NodeNotServing, NetnsInode: ns},
		{Service: "s", Addr: netip.MustParseAddrPort("10.0.0.4:1"), Stale: true, NetnsInode: ns},
		{Service: "other", Addr: netip.MustParseAddrPort("10.0.0.5:1"), NetnsInode: ns},
		{Service: "s", Addr: netip.MustParseAddrPort("127.0.0.1:1"), NetnsInode: ns + 1}, // another namespace's loopback
		{Service: "s", Addr: netip.MustParseAddrPort("127.0.0.1:2"), NetnsInode: ns},     // ours
		{Service: "s", Addr: netip.MustParseAddrPort("10.0.0.6:1"), NetnsInode: ns + 1},  // routable, maybe
	}
	st := node.Endpoints(entries, "s", ns).State()
	want := map[string]runtime.EndpointHealth{"10.0.0.1:1": runtime.HealthServing, "10.0.0.2:1": runtime.HealthDraining,
		"10.0.0.3:1": runtime.HealthUnhealthy, "127.0.0.1:2": runtime.HealthServing, "10.0.0.6:1": runtime.HealthServing}
	if len(st.Endpoints) != len(want) {
		t.Fatalf("%d endpoints, want %d: %+v", len(st.Endpoints), len(want), st.Endpoints)
	}
	for _, ep := range st.Endpoints {
		if h, ok := want[ep.Addr.String()]; !ok || h != ep.Health {
			t.Errorf("%v: health %v (listed %v)", ep.Addr, ep.Health, ok)
		}
	}
}

// The whole path with no control plane: a server in one namespace
// registers itself through runtime.WithRegistry, a client in another
// namespace of the node finds it by service name and calls it; Shutdown
// deregisters it.
func TestServerFoundAcrossNamespaces(t *testing.T) {
	b := builder(t)
	svc := service(t)
	link := topo.Pair(t, topo.Config{})
	addr := netip.AddrPortFrom(link.A.Addr4, 7000)
	var srv *runtime.Server
	err := link.A.Host.Do(func() error {
		var err error
		srv, err = runtime.Listen("udp", addr.String(), runtime.WithBackend(runtime.BackendUring), runtime.WithBusyPoll(0),
			runtime.WithLogger(quiet), runtime.WithRegistry(node.NewRegistry(node.WithLogger(quiet)), svc))
		if err != nil {
			return err
		}
		echo.Register(srv)
		return srv.Start() // registers from the server's namespace
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	var cli *runtime.Client
	var eng *runtime.Engine
	if err := link.B.Host.Do(func() error {
		var err error
		if eng, err = runtime.NewEngine(runtime.WithEngineLogger(quiet)); err != nil {
			return err
		}
		cli, err = runtime.DialService(svc, runtime.WithEngine(eng), runtime.WithResolver(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := []byte{0x0a, 0x02, 'h', 'i'}
	start := time.Now()
	rep, err := cli.Call(ctx, echo.EchoMethod, p, nil)
	if err != nil || !bytes.Equal(rep.Payload, p) {
		t.Fatalf("call by service name: %x, %v", rep.Payload, err)
	}
	t.Logf("first call by name answered %v after DialService", time.Since(start).Round(time.Microsecond))
	if eps := cli.Endpoints(); len(eps) != 1 || eps[0].Addr() != addr {
		t.Fatalf("endpoints %v, want %v", eps, addr)
	}
	srv.Shutdown(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for len(cli.Endpoints()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server's entry outlived its Shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBuildRefusesLongNames(t *testing.T) {
	b := builder(t)
	long := string(bytes.Repeat([]byte{'a'}, bpf.NodeServiceMax+1))
	if _, err := b.Build(long, conntest.New()); err == nil {
		t.Error("a service name longer than the table holds was accepted")
	}
	if _, err := node.NewBuilder(node.WithInterval(0)); err == nil {
		t.Error("WithInterval(0) accepted")
	}
}
