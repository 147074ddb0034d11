package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Variant names, as they appear in the JSON report.
const (
	VariantXSK = "zerohop-xsk"
	// VariantXSKPolicies is zerohop-xsk with the mesh policies on: an
	// authorization policy that allows the load, a rate limit it never
	// reaches, the load shedder (BenchPolicy).
	VariantXSKPolicies = "zerohop-xsk+policies"
	// VariantXSKTelemetry is zerohop-xsk with its admin endpoint scraped
	// (GET /metrics) once a second during the run: the cost of telemetry.
	VariantXSKTelemetry = "zerohop-xsk-telemetry"
	// VariantXSKDialService serves like zerohop-xsk; only the
	// runtime-client load drives it, calling by service name
	// (mesh.DialService over a static resolver of the one endpoint, p2c,
	// health checks on). Its ratio to zerohop-xsk under the same load,
	// which dials by address, is the cost of calling by name.
	VariantXSKDialService = "zerohop-xsk+dialservice"
	VariantUring          = "zerohop-uring"
	VariantNetUDP         = "netudp"
	VariantNetHTTP        = "nethttp"
	VariantSidecar        = "nethttp-sidecar"
	VariantRawXSK         = "raw-xsk"
	baselineVariant       = VariantNetHTTP
)

// AllVariants lists the variants in the order the harness runs them.
var AllVariants = []string{VariantXSK, VariantXSKPolicies, VariantXSKTelemetry, VariantXSKDialService, VariantUring, VariantNetUDP, VariantGnet, VariantNetHTTP, VariantSidecar, VariantRawXSK}

// Report is one run of the harness; it marshals to the JSON of --json.
type Report struct {
	Date     string          `json:"date"`
	Machine  Machine         `json:"machine"`
	Settings Settings        `json:"settings"`
	Variants []VariantResult `json:"variants"`
	// Namespaces the run created (and removed again).
	Namespaces []string `json:"namespaces,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	Hostname    string `json:"hostname"`
	Kernel      string `json:"kernel"`
	CPUModel    string `json:"cpu_model"`
	CPUs        int    `json:"cpus"`
	GoVersion   string `json:"go_version"`
	ServerCores []int  `json:"server_cores"`
	ClientCore  int    `json:"client_core"`
	Topology    string `json:"topology"`
}

// Settings are the load parameters of the run.
type Settings struct {
	Outstanding  []int   `json:"outstanding"`
	DurationS    float64 `json:"duration_s"`
	WarmupS      float64 `json:"warmup_s"`
	PayloadBytes int     `json:"payload_bytes"`
	Queues       int     `json:"queues"`
	// Loads are the GWIR load generators the run used.
	Loads []string `json:"loads,omitempty"`
}

// VariantResult holds the points of one server variant under one load,
// or why they were not measured.
type VariantResult struct {
	Name string `json:"name"`
	// Load is the load generator that drove the points: LoadKernelUDP,
	// LoadXSK, LoadEngine or LoadHTTP (empty in reports from before
	// there was a choice: see LoadName).
	Load    string  `json:"load,omitempty"`
	Skipped string  `json:"skipped"`
	Detail  string  `json:"detail,omitempty"` // e.g. the backend line of zerohop serve
	Points  []Point `json:"points"`
	// LoadDetail is how the load generator ran (its first point's word).
	LoadDetail string `json:"load_detail,omitempty"`
	// PeakRSSBytes is the server's high-water mark (VmHWM) over all points.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// Point is one load level of one variant.
type Point struct {
	Outstanding int     `json:"outstanding"`
	RPS         float64 `json:"rps"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
	P999Us      float64 `json:"p999_us"`
	MaxUs       float64 `json:"max_us"`
	CPUSPerMReq float64 `json:"cpu_s_per_mreq"`
	// ServerCPUCores is server CPU seconds per wall second (1.0 = one
	// core busy the whole window).
	ServerCPUCores float64 `json:"server_cpu_cores"`
	RSSBytes       int64   `json:"rss_bytes"`
	Errors         int64   `json:"errors"`
	Requests       int64   `json:"requests"`
	// ClientCPUCores is the load generator's CPU seconds per wall second:
	// near 1.0 means the client, not the server, may be the bottleneck.
	// ClientCPUSPerMReq is the load generator's CPU seconds per million
	// requests; both client figures come from /proc of the client process
	// over the window, as the server's do.
	ClientCPUCores    float64 `json:"client_cpu_cores"`
	ClientCPUSPerMReq float64 `json:"client_cpu_s_per_mreq"`
	// Retransmits are the requests the load sent again for want of a
	// reply; LoadDrops the packets the XSK load's sockets lost.
	Retransmits int64  `json:"retransmits"`
	LoadDrops   uint64 `json:"load_drops,omitempty"`
	// ClientSpinIdleCores is the part of ClientCPUCores the XSK load spent
	// spinning on an empty RX ring (ClientResult.SpinIdleS per second):
	// a load near 1.0 client cores with much of it idle spin was not the
	// limit.
	ClientSpinIdleCores float64 `json:"client_spin_idle_cores,omitempty"`
	// Ratios against nethttp at the same outstanding count in this run;
	// zero when there is no baseline point.
	RPSVsNetHTTP float64 `json:"rps_vs_nethttp,omitempty"`
	P99VsNetHTTP float64 `json:"p99_vs_nethttp,omitempty"`
	CPUVsNetHTTP float64 `json:"cpu_vs_nethttp,omitempty"`
	// Error is set when this point could not be measured.
	Error string `json:"error,omitempty"`
}

// ComputeRatios fills the *VsNetHTTP fields of every point from the
// nethttp point with the same outstanding count.
func (r *Report) ComputeRatios() {
	base := map[int]Point{}
	for _, v := range r.Variants {
		if v.Name == baselineVariant {
			for _, p := range v.Points {
				if p.Error == "" {
					base[p.Outstanding] = p
				}
			}
		}
	}
	for i := range r.Variants {
		for j := range r.Variants[i].Points {
			p := &r.Variants[i].Points[j]
			b, ok := base[p.Outstanding]
			if !ok || p.Error != "" {
				continue
			}
			p.RPSVsNetHTTP = ratio(p.RPS, b.RPS)
			p.P99VsNetHTTP = ratio(p.P99Us, b.P99Us)
			p.CPUVsNetHTTP = ratio(p.CPUSPerMReq, b.CPUSPerMReq)
		}
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Variant returns the named variant's first result (under the first
// load that drove it), or nil.
func (r *Report) Variant(name string) *VariantResult {
	for i := range r.Variants {
		if r.Variants[i].Name == name {
			return &r.Variants[i]
		}
	}
	return nil
}

// Row returns the named variant's result under load, or nil.
func (r *Report) Row(name, load string) *VariantResult {
	for i := range r.Variants {
		if r.Variants[i].Name == name && r.Variants[i].LoadName() == load {
			return &r.Variants[i]
		}
	}
	return nil
}

// LoadName is the load that drove the variant: Load, or for reports
// written before there was a choice, the only load of its kind then
// (the kernel-UDP client for GWIR, HTTP for the net/http variants).
func (v *VariantResult) LoadName() string {
	if v.Load != "" {
		return v.Load
	}
	if variantServerLoad(v.Name) == LoadHTTP {
		return LoadHTTP
	}
	return LoadKernelUDP
}

// Label names the row for legends: "variant (load)".
func (v *VariantResult) Label() string { return v.Name + " (" + v.LoadName() + ")" }

// Point returns the point at n outstanding requests, or nil.
func (v *VariantResult) Point(n int) *Point {
	for i := range v.Points {
		if v.Points[i].Outstanding == n {
			return &v.Points[i]
		}
	}
	return nil
}

// WriteJSON writes the report to path, indented.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encoding report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: writing %s: %w", path, err)
	}
	return nil
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: reading %s: %w", path, err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("bench: decoding %s: %w", path, err)
	}
	return &r, nil
}

// WriteTable writes the report as a Markdown table.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "variant\tload\tN\treq/s\tp50 µs\tp99 µs\tp99.9 µs\tsrv CPU s/Mreq\tsrv cores\tRSS MiB\terrors\tclient CPU s/Mreq\tclient cores\t× rps\t× p99\t× CPU\t")
	fmt.Fprintln(tw, strings.Repeat("-\t", 16))
	var notes []string
	for _, v := range r.Variants {
		load := v.LoadName()
		if v.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t–\tskipped\t\t\t\t\t\t\t\t\t\t\t\t\t\n", v.Name, load)
			notes = append(notes, fmt.Sprintf("%s (%s): skipped: %s", v.Name, load, v.Skipped))
			continue
		}
		for _, p := range v.Points {
			if p.Error != "" {
				fmt.Fprintf(tw, "%s\t%s\t%d\terror\t\t\t\t\t\t\t\t\t\t\t\t\t\n", v.Name, load, p.Outstanding)
				notes = append(notes, fmt.Sprintf("%s (%s) N=%d: error: %s", v.Name, load, p.Outstanding, p.Error))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.1f\t%d\t%.2f\t%.2f\t%s\t%s\t%s\t\n",
				v.Name, load, p.Outstanding, p.RPS, p.P50Us, p.P99Us, p.P999Us, p.CPUSPerMReq, p.ServerCPUCores,
				float64(p.RSSBytes)/(1<<20), p.Errors, p.ClientCPUSPerMReq, p.ClientCPUCores,
				fmtRatio(p.RPSVsNetHTTP), fmtRatio(p.P99VsNetHTTP), fmtRatio(p.CPUVsNetHTTP))
			notes = append(notes, lossNote(v.Name, load, p)...)
		}
		if n := spinNote(v); n != "" {
			notes = append(notes, n)
		}
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	fmt.Fprintln(w, "× rps, × p99, × CPU: against nethttp at the same N in this run; load: the client that drove the row; client CPU s/Mreq and client cores: the load generator's CPU per million requests and per wall second")
}

// lossNote says when a point's load had to resend requests or lost
// packets in its own sockets.
func lossNote(name, load string, p Point) []string {
	if p.Retransmits == 0 && p.LoadDrops == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s (%s) N=%d: %d retransmissions, %d packets dropped by the load's sockets",
		name, load, p.Outstanding, p.Retransmits, p.LoadDrops)}
}

// spinNote says, for the XSK load's rows, how much of its core the load
// spent spinning on an empty ring at each N.
func spinNote(v VariantResult) string {
	if v.LoadName() != LoadXSK {
		return ""
	}
	var parts []string
	for _, p := range v.Points {
		if p.Error == "" {
			parts = append(parts, fmt.Sprintf("%.2f at N=%d", p.ClientSpinIdleCores, p.Outstanding))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("%s (xsk): of its client cores the load spun idle %s", v.Name, strings.Join(parts, ", "))
}

// WriteMarkdown writes the report as a Markdown table (for docs).
func (r *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintln(w, "| variant | load | N | req/s | p50 µs | p99 µs | p99.9 µs | server CPU s/Mreq | RSS MiB | errors | client CPU s/Mreq | client cores | × rps | × p99 | × CPU |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, v := range r.Variants {
		load := v.LoadName()
		if v.Skipped != "" {
			fmt.Fprintf(w, "| %s | %s | skipped: %s ||||||||||||\n", v.Name, load, v.Skipped)
			continue
		}
		for _, p := range v.Points {
			if p.Error != "" {
				fmt.Fprintf(w, "| %s | %s | %d | error: %s |||||||||||\n", v.Name, load, p.Outstanding, p.Error)
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %d | %.0f | %.1f | %.1f | %.1f | %.2f | %.1f | %d | %.2f | %.2f | %s | %s | %s |\n",
				v.Name, load, p.Outstanding, p.RPS, p.P50Us, p.P99Us, p.P999Us, p.CPUSPerMReq,
				float64(p.RSSBytes)/(1<<20), p.Errors, p.ClientCPUSPerMReq, p.ClientCPUCores,
				fmtRatio(p.RPSVsNetHTTP), fmtRatio(p.P99VsNetHTTP), fmtRatio(p.CPUVsNetHTTP))
		}
	}
}

func fmtRatio(x float64) string {
	if x == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", x)
}

func seconds(d time.Duration) float64 { return d.Seconds() }
