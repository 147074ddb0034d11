package bench

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestParseLoads(t *testing.T) {
	for in, want := range map[string][]string{
		"xsk":                           {LoadXSK},
		"engine, kernel":                {LoadKernelUDP, LoadEngine},
		"runtime-client,xsk,xsk":        {LoadXSK, LoadEngine},
		"all":                           AllGWIRLoads,
		"kernel-udp,xsk,runtime-client": AllGWIRLoads,
	} {
		got, err := ParseLoads(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseLoads(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "udp", "xsk,", "http"} {
		if got, err := ParseLoads(bad); err == nil {
			t.Errorf("ParseLoads(%q) = %v, want an error", bad, got)
		}
	}
}

func TestLoadsForVariants(t *testing.T) {
	all := AllGWIRLoads
	if got := loadsFor(VariantNetHTTP, LoadHTTP, all); !slices.Equal(got, []string{LoadHTTP}) {
		t.Errorf("nethttp: %v", got)
	}
	if got := loadsFor(VariantXSK, LoadGWIR, all); !slices.Equal(got, all) {
		t.Errorf("zerohop-xsk: %v", got)
	}
	if got := loadsFor(VariantGnet, LoadGWIR, all); !slices.Equal(got, []string{LoadKernelUDP, LoadXSK}) {
		t.Errorf("gnet gets the runtime-client load: %v", got)
	}
	if got := loadsFor(VariantUring, LoadGWIR, []string{LoadEngine}); len(got) != 0 {
		t.Errorf("zerohop-uring under runtime-client only: %v", got)
	}
	for _, only := range []string{VariantXSKSealed, VariantXSKDialService} {
		if got := loadsFor(only, LoadGWIR, all); !slices.Equal(got, []string{LoadEngine}) {
			t.Errorf("%s: %v, want only the runtime-client load", only, got)
		}
	}
	if clientKind(LoadKernelUDP) != LoadGWIR || clientKind(LoadXSK) != LoadXSK {
		t.Error("bench-client kinds")
	}
}

// TestRowsSayWhichLoadDroveThem: the table and Markdown carry the load
// and the client's CPU per request; reports from before there was a
// choice of load read as the kernel-UDP (GWIR) or HTTP load.
func TestRowsSayWhichLoadDroveThem(t *testing.T) {
	r := &Report{Variants: []VariantResult{
		{Name: VariantXSK, Load: LoadXSK, Points: []Point{{Outstanding: 64, RPS: 1000, ClientCPUSPerMReq: 1.25, Retransmits: 3}}},
		{Name: VariantXSK, Load: LoadEngine, Points: []Point{{Outstanding: 64, RPS: 900, ClientCPUSPerMReq: 4.5}}},
		{Name: VariantGnet, Load: LoadKernelUDP, Skipped: "server exited", Points: []Point{}},
		{Name: VariantNetUDP, Points: []Point{{Outstanding: 64, RPS: 800}}},
		{Name: VariantNetHTTP, Points: []Point{{Outstanding: 64, RPS: 100}}},
	}}
	if got := r.Row(VariantXSK, LoadEngine); got == nil || got.Points[0].RPS != 900 {
		t.Errorf("Row(zerohop-xsk, runtime-client) = %+v", got)
	}
	if got := r.Row(VariantNetUDP, LoadKernelUDP); got == nil {
		t.Error("a row without a load does not read as kernel-udp")
	}
	if got := r.Variants[4].LoadName(); got != LoadHTTP {
		t.Errorf("nethttp's load reads as %q", got)
	}
	var table, md bytes.Buffer
	r.WriteTable(&table)
	r.WriteMarkdown(&md)
	for name, out := range map[string]string{"table": table.String(), "markdown": md.String()} {
		for _, want := range []string{"client CPU s/Mreq", "1.25", "4.50"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %q:\n%s", name, want, out)
			}
		}
		for _, row := range [][2]string{{"variant", "load"}, {VariantXSK, LoadXSK}, {VariantXSK, LoadEngine},
			{VariantGnet, LoadKernelUDP}, {VariantNetUDP, LoadKernelUDP}} {
			if !rowHas(out, row[0], row[1]) {
				t.Errorf("%s has no row %s / %s:\n%s", name, row[0], row[1], out)
			}
		}
	}
	if !strings.Contains(table.String(), "zerohop-xsk (xsk) N=64: 3 retransmissions") {
		t.Errorf("table lacks the retransmission note:\n%s", table.String())
	}
	// The JSON says the load of each row.
	data, _ := json.Marshal(r)
	var doc struct {
		Variants []map[string]any `json:"variants"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Variants[1]["load"] != LoadEngine {
		t.Errorf("JSON rows: %v, %v", doc.Variants, err)
	}
}

// rowHas reports whether a line of out names both the variant and the
// load as cells.
func rowHas(out, variant, load string) bool {
	for _, line := range strings.Split(out, "\n") {
		cells := strings.FieldsFunc(line, func(r rune) bool { return r == '|' })
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) > 1 && cells[0] == variant && cells[1] == load {
			return true
		}
	}
	return false
}
