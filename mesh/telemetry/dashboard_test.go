package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
)

type dashPanel struct {
	Title   string      `json:"title"`
	Type    string      `json:"type"`
	Panels  []dashPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardExprs returns every PromQL expression of the Grafana dashboard
// (panel targets and template queries), by panel title.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	out := map[string][]string{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				out[p.Title] = append(out[p.Title], tg.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if m := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`).FindStringSubmatch(v.Definition); m != nil {
			out["variable "+v.Name] = append(out["variable "+v.Name], m[1])
		}
	}
	return out
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promIdent    = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\b`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// promNames returns the metric names expr selects and the labels it
// groups by, from a small tokenizer over PromQL (promtool checks the
// syntax itself below).
func promNames(expr string) (names, grouping []string) {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	for _, m := range promGrouping.FindAllStringSubmatch(e, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				grouping = append(grouping, l)
			}
		}
	}
	e = promGrouping.ReplaceAllString(e, " ")
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		rest := strings.TrimSpace(e[loc[1]:])
		if promKeywords[strings.ToLower(id)] || strings.HasPrefix(rest, "(") {
			continue // an operator or a function
		}
		names = append(names, id)
	}
	return names, grouping
}

// TestDashboardNamesExistingMetrics: every expression of the Grafana
// dashboard selects metrics that zerohop exports (or the Go and process
// collectors the admin endpoint adds), groups only by labels those
// metrics have, and is valid PromQL for promtool.
func TestDashboardNamesExistingMetrics(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("only %d panels with queries", len(exprs))
	}
	labels := map[string]map[string]bool{} // metric (with histogram series names) → labels
	for _, d := range allMetrics() {
		names := []string{d.name}
		if d.kind == histogramKind {
			names = []string{d.name + "_bucket", d.name + "_sum", d.name + "_count"}
		}
		for _, n := range names {
			labels[n] = map[string]bool{}
			for _, l := range d.labels {
				labels[n][l] = true
			}
			if strings.HasSuffix(n, "_bucket") {
				labels[n]["le"] = true
			}
		}
	}
	a, err := NewAdmin(AdminConfig{Socket: "-"}, Sources{})
	if err != nil {
		t.Fatal(err)
	}
	fams, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if _, ok := labels[f.GetName()]; !ok {
			labels[f.GetName()] = map[string]bool{}
		}
	}
	used := map[string]bool{}
	var all []string
	for title, es := range exprs {
		for _, e := range es {
			names, grouping := promNames(e)
			if len(names) == 0 {
				t.Errorf("%s: %q names no metric", title, e)
			}
			for _, n := range names {
				if labels[n] == nil {
					t.Errorf("%s: %q selects %s, which zerohop does not export", title, e, n)
				}
				used[n] = true
			}
			for _, g := range grouping {
				if g == "instance" || g == "job" {
					continue // added by Prometheus
				}
				ok := false
				for _, n := range names {
					ok = ok || labels[n][g]
				}
				if !ok {
					t.Errorf("%s: %q groups by %q, a label none of %v has", title, e, g, names)
				}
			}
			all = append(all, e)
		}
	}
	// The dashboard covers the headline metrics of every source.
	for _, n := range []string{"zerohop_server_requests_total", "zerohop_server_request_duration_seconds_bucket", "zerohop_drops_total",
		"zerohop_loop_rx_packets_total", "zerohop_xdp_packets_total", "zerohop_client_requests_total", "zerohop_endpoints",
		"zerohop_breaker_state", "zerohop_ratelimited_total"} {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		topo.SkipMissing(t, "promtool not installed (Debian package prometheus; scripts/test installs it): PromQL syntax not checked")
	}
	sort.Strings(all)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range all {
		e = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(e)
		q, _ := json.Marshal(e)
		fmt.Fprintf(&rules, "      - record: dashboard:expr%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules over the dashboard's expressions: %v\n%s", err, out)
	}
}

// TestPromNames pins the tokenizer the dashboard test relies on.
func TestPromNames(t *testing.T) {
	names, by := promNames(`1e6 * sum by (instance) (rate(process_cpu_seconds_total{instance=~"$instance"}[5m])) / sum without (le, x) (rate(zerohop_server_requests_total{status!="OK"}[5m])) > 0`)
	if strings.Join(names, ",") != "process_cpu_seconds_total,zerohop_server_requests_total" || strings.Join(by, ",") != "instance,le,x" {
		t.Errorf("names %v, grouping %v", names, by)
	}
}
