package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestMain(m *testing.M) { leak.Main(m) }

func sampleReport() *Report {
	return &Report{
		Date: "2026-01-02T03:04:05Z",
		Variants: []VariantResult{
			{Name: VariantXSK, Points: []Point{
				{Outstanding: 1, RPS: 30000, P99Us: 40, CPUSPerMReq: 10},
				{Outstanding: 64, RPS: 300000, P99Us: 300, CPUSPerMReq: 3},
			}},
			{Name: VariantNetHTTP, Points: []Point{
				{Outstanding: 1, RPS: 10000, P99Us: 200, CPUSPerMReq: 50},
				{Outstanding: 64, RPS: 50000, P99Us: 3000, CPUSPerMReq: 40},
			}},
			{Name: VariantSidecar, Skipped: "nginx not installed", Points: []Point{}},
			{Name: VariantRawXSK, Points: []Point{
				{Outstanding: 1, Error: "client: exit status 1"},
				{Outstanding: 256, RPS: 400000, P99Us: 900, CPUSPerMReq: 2},
			}},
		},
	}
}

func TestRatiosAgainstNetHTTP(t *testing.T) {
	r := sampleReport()
	r.ComputeRatios()
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	x := r.Variant(VariantXSK)
	if p := x.Point(64); !near(p.RPSVsNetHTTP, 6) || !near(p.P99VsNetHTTP, 0.1) || !near(p.CPUVsNetHTTP, 3.0/40) {
		t.Errorf("xsk N=64 ratios: %+v", p)
	}
	if p := x.Point(1); !near(p.RPSVsNetHTTP, 3) || !near(p.P99VsNetHTTP, 0.2) || !near(p.CPUVsNetHTTP, 0.2) {
		t.Errorf("xsk N=1 ratios: %+v", p)
	}
	if p := r.Variant(VariantNetHTTP).Point(64); !near(p.RPSVsNetHTTP, 1) || !near(p.P99VsNetHTTP, 1) {
		t.Errorf("baseline against itself: %+v", p)
	}
	raw := r.Variant(VariantRawXSK)
	if p := raw.Point(1); p.RPSVsNetHTTP != 0 {
		t.Errorf("failed point got a ratio: %+v", p)
	}
	if p := raw.Point(256); p.RPSVsNetHTTP != 0 {
		t.Errorf("point without a baseline got a ratio: %+v", p)
	}
}

// TestJSONShape checks the keys the issue promises, by decoding the JSON
// into generic maps rather than into our own types.
func TestJSONShape(t *testing.T) {
	r := sampleReport()
	r.ComputeRatios()
	path := filepath.Join(t.TempDir(), "out.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"date", "machine", "variants"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("top level lacks %q", k)
		}
	}
	if _, ok := doc["machine"].(map[string]any); !ok {
		t.Errorf("machine is %T, want an object", doc["machine"])
	}
	variants := doc["variants"].([]any)
	if len(variants) != 4 {
		t.Fatalf("%d variants", len(variants))
	}
	for _, v := range variants {
		vm := v.(map[string]any)
		name, _ := vm["name"].(string)
		if !contains(AllVariants, name) {
			t.Errorf("variant name %q", name)
		}
		if _, ok := vm["skipped"].(string); !ok {
			t.Errorf("%s: skipped is %T, want a string (empty when run)", name, vm["skipped"])
		}
		points, ok := vm["points"].([]any)
		if !ok {
			t.Errorf("%s: points is %T, want an array", name, vm["points"])
			continue
		}
		for _, p := range points {
			pm := p.(map[string]any)
			for _, k := range []string{"outstanding", "rps", "p50_us", "p99_us", "p999_us", "cpu_s_per_mreq", "rss_bytes", "errors"} {
				if _, ok := pm[k].(float64); !ok {
					t.Errorf("%s point lacks number %q: %v", name, k, pm)
				}
			}
		}
	}
	if got := variants[0].(map[string]any)["points"].([]any)[1].(map[string]any)["rps_vs_nethttp"]; got != 6.0 {
		t.Errorf("rps_vs_nethttp = %v, want 6", got)
	}
	var table, md bytes.Buffer
	r.WriteTable(&table)
	r.WriteMarkdown(&md)
	for _, out := range []string{table.String(), md.String()} {
		if !strings.Contains(out, "skipped: nginx not installed") || !strings.Contains(out, "6.00") {
			t.Errorf("table lacks the skip reason or the ratio:\n%s", out)
		}
	}
}

func TestPayloadIsValidProtobufOfExactSize(t *testing.T) {
	for _, n := range []int{2, 3, 64, 129, 130, 131, 1000, 1400} {
		p := Payload(n)
		if len(p) != n {
			t.Errorf("Payload(%d) has %d bytes", n, len(p))
		}
		for rest := p; len(rest) > 0; {
			num, typ, m := protowire.ConsumeTag(rest)
			if m < 0 || num < 1 || num > 2 || typ != protowire.BytesType {
				t.Fatalf("Payload(%d): bad tag % x", n, rest)
			}
			k := protowire.ConsumeFieldValue(num, typ, rest[m:])
			if k < 0 {
				t.Fatalf("Payload(%d): bad field % x", n, rest)
			}
			rest = rest[m+k:]
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	// Field 2 holds spaces and a ')' to make sure the parser cuts at the last one.
	line := []byte("1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 200 18446744073709551615")
	got, err := parseStatCPU(line)
	if err != nil || got != 3250*time.Millisecond {
		t.Fatalf("got %v, %v; want 3.25s", got, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Fatal("malformed line accepted")
	}
}

func TestTreeUsageReadsThisProcess(t *testing.T) {
	u := treeUsage(os.Getpid())
	if u.counted != 1 || u.rssB <= 0 || u.hwmB < u.rssB {
		t.Fatalf("usage of this process: %+v", u)
	}
}
