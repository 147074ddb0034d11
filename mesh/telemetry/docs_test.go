package telemetry

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type docRow struct {
	kind   string
	labels []string
}

// docMetrics reads the metric tables of docs/metrics.md: rows
// "| `name` | type | `label`, `label` | meaning |".
func docMetrics(t *testing.T) map[string]docRow {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatalf("reading docs/metrics.md: %v", err)
	}
	out := map[string]docRow{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "| `zerohop_") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Fatalf("docs/metrics.md: malformed row %q", line)
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		var labels []string
		for _, l := range strings.Split(cells[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				labels = append(labels, l)
			}
		}
		if _, dup := out[name]; dup {
			t.Errorf("docs/metrics.md documents %s twice", name)
		}
		out[name] = docRow{kind: strings.TrimSpace(cells[2]), labels: labels}
	}
	return out
}

func kindName(k prometheus.ValueType) string {
	switch k {
	case prometheus.CounterValue:
		return "counter"
	case prometheus.GaugeValue:
		return "gauge"
	}
	return "histogram"
}

// TestMetricsDocMatchesRegistry keeps docs/metrics.md and the exported
// metrics identical: every metric a Collector with every source exports
// is documented with its type and labels, and every documented metric is
// exported.
func TestMetricsDocMatchesRegistry(t *testing.T) {
	doc := docMetrics(t)
	if len(doc) == 0 {
		t.Fatal("docs/metrics.md documents no zerohop_ metric")
	}
	ts := startServer(t)
	c := newRawClient(t, ts.srv.Addr())
	c.call(mEcho, nil, nil)
	tr := newTestTracer(t, newOTLPReceiver(t), 0)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(Sources{Server: ts.srv, XDP: fakeXDP{}, Iface: "eth9", Client: fakeClient{}, Tracer: tr,
		Sessions: fakeSessions{}}))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather (pedantic): %v", err)
	}
	exported := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		exported[f.GetName()] = f
	}
	for _, d := range allMetrics() {
		row, ok := doc[d.name]
		if !ok {
			t.Errorf("%s is exported but not in docs/metrics.md", d.name)
			continue
		}
		if row.kind != kindName(d.kind) {
			t.Errorf("%s: docs say %s, it is a %s", d.name, row.kind, kindName(d.kind))
		}
		if !reflect.DeepEqual(row.labels, d.labels) && !(len(row.labels) == 0 && len(d.labels) == 0) {
			t.Errorf("%s: docs list labels %v, it has %v", d.name, row.labels, d.labels)
		}
		f := exported[d.name]
		if f == nil {
			t.Errorf("%s is defined and documented but a Collector with every source exported no series of it", d.name)
			continue
		}
		want := map[string]dto.MetricType{"counter": dto.MetricType_COUNTER, "gauge": dto.MetricType_GAUGE, "histogram": dto.MetricType_HISTOGRAM}[kindName(d.kind)]
		if f.GetType() != want {
			t.Errorf("%s: exported as %v, want %v", d.name, f.GetType(), want)
		}
		var have []string
		for _, l := range f.Metric[0].Label {
			have = append(have, l.GetName())
		}
		wantLabels := append([]string(nil), d.labels...)
		sort.Strings(wantLabels)
		sort.Strings(have)
		if !reflect.DeepEqual(have, wantLabels) && len(have)+len(wantLabels) > 0 {
			t.Errorf("%s: exported with labels %v, want %v", d.name, have, wantLabels)
		}
	}
	defined := map[string]bool{}
	for _, d := range allMetrics() {
		defined[d.name] = true
	}
	for name := range doc {
		if !defined[name] {
			t.Errorf("docs/metrics.md documents %s, which is not exported", name)
		}
	}
	for name := range exported {
		if strings.HasPrefix(name, "zerohop_") && !defined[name] {
			t.Errorf("%s is exported without a definition", name)
		}
	}
}

// TestCollectorRegistersOnlyItsSources: no client source, no client
// series (and no descriptors a registry would have to accept).
func TestCollectorRegistersOnlyItsSources(t *testing.T) {
	ts := startServer(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(Sources{Server: ts.srv}))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, prefix := range []string{"zerohop_client_", "zerohop_endpoint", "zerohop_breaker_", "zerohop_xdp_", "zerohop_trace_"} {
			if strings.HasPrefix(f.GetName(), prefix) {
				t.Errorf("%s exported without its source", f.GetName())
			}
		}
	}
	if len(fams) == 0 {
		t.Fatal("no server metrics at all")
	}
}

// TestXDPReadFailureKeepsScraping: maps that cannot be read make
// zerohop_xdp_up 0 and the rest of the scrape still works.
func TestXDPReadFailureKeepsScraping(t *testing.T) {
	ts := startServer(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(Sources{Server: ts.srv, XDP: fakeXDP{fail: true}, Iface: "eth9"}))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("a failed map read failed the scrape: %v", err)
	}
	got := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		got[f.GetName()] = f
	}
	if up := got["zerohop_xdp_up"]; up == nil || up.Metric[0].Gauge.GetValue() != 0 {
		t.Errorf("zerohop_xdp_up: %v, want 0", up)
	}
	if got["zerohop_xdp_packets_total"] != nil {
		t.Error("zerohop_xdp_packets_total exported from maps that failed")
	}
	if got["zerohop_server_requests_total"] == nil {
		t.Error("server metrics missing when the XDP read failed")
	}
}
