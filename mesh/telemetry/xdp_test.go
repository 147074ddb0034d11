package telemetry

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// TestXDPMetricsFromAttachedProgram: on the XSK backend the collector
// finds the interface's steering program by id and exports its per-CPU
// counters: every call made over the veth shows as a redirect, and the
// loop's requests arrive on the xsk path.
func TestXDPMetricsFromAttachedProgram(t *testing.T) {
	link := topo.Pair(t, topo.Config{TxChecksumOff: true})
	addr := netip.AddrPortFrom(link.A.Addr4, 7400)
	var srv *runtime.Server
	if err := link.A.Host.Do(func() (err error) {
		srv, err = runtime.Listen("udp", addr.String(), runtime.WithBackend(runtime.BackendXSK), runtime.WithInterface(link.A.Iface),
			runtime.WithLogger(discardLogger()))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv.Handle(mEcho, func(req *runtime.Request, resp *runtime.Response) { resp.Write(req.Payload()) })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })

	const calls = 30
	var c *runtime.Client
	if err := link.B.Host.Do(func() (err error) { c, err = runtime.Dial("udp", addr.String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < calls; i++ {
		if _, err := c.Call(ctx, mEcho, nil, nil); err != nil {
			t.Fatal(err)
		}
	}

	xdp := &attachedXDP{iface: link.A.Iface}
	defer xdp.Close()
	col := NewCollector(Sources{Server: srv, XDP: xdp, Iface: link.A.Iface})
	got := map[string][]*dto.Metric{}
	// The maps are found through the interface in the calling thread's
	// network namespace: collect on a thread in the server's.
	if err := link.A.Host.Do(func() error {
		ch := make(chan prometheus.Metric, 4096)
		col.Collect(ch)
		close(ch)
		for m := range ch {
			var d dto.Metric
			if err := m.Write(&d); err != nil {
				return err
			}
			name := m.Desc().String()
			name = name[strings.Index(name, `fqName: "`)+9:]
			name = name[:strings.Index(name, `"`)]
			got[name] = append(got[name], &d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		m := sample(&dto.MetricFamily{Metric: got[name]}, labels)
		if m == nil {
			t.Fatalf("no %s%v", name, labels)
		}
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	if up := value("zerohop_xdp_up", map[string]string{"iface": link.A.Iface}); up != 1 {
		t.Fatalf("zerohop_xdp_up = %v", up)
	}
	if r := value("zerohop_xdp_packets_total", map[string]string{"iface": link.A.Iface, "action": "redirect"}); r < calls {
		t.Errorf("redirected %v, want ≥ %d", r, calls)
	}
	if s := value("zerohop_xdp_services", map[string]string{"state": "live"}); s != 1 {
		t.Errorf("live services %v, want 1", s)
	}
	if s := value("zerohop_xdp_servers", map[string]string{"state": "live"}); s != 1 {
		t.Errorf("live servers %v, want 1", s)
	}
	// Delivery is at least once: a copy the client retransmitted (its
	// first RTO is a guess) may be served too, so the server sees between
	// the calls and the copies sent.
	cs := c.Stats()
	if cs.Requests != calls {
		t.Errorf("client sent %d first copies, want %d", cs.Requests, calls)
	}
	sent := float64(cs.Requests + cs.Retransmits)
	if n := value("zerohop_loop_requests_total", map[string]string{"path": "xsk"}); n < calls || n > sent {
		t.Errorf("requests on the xsk path %v, want %d to %v (the copies sent)", n, calls, sent)
	}
	if n := value("zerohop_server_requests_total", map[string]string{"method": mEcho, "status": proto.StatusOK.String()}); n < calls || n > sent {
		t.Errorf("OK echo requests %v, want %d to %v (the copies sent)", n, calls, sent)
	}
}
