package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/bench"
	"github.com/zerohop/zerohop/internal/topo"
	"golang.org/x/sys/unix"
)

// benchChildEnv makes the test binary behave as the zerohop binary, so the
// harness can run it as its server and client subprocesses.
const benchChildEnv = "ZEROHOP_TEST_AS_ZEROHOP"

func init() {
	if os.Getenv(benchChildEnv) == "1" {
		main() // exits
	}
}

// TestBenchQuickHarness runs the harness end to end for one load point on
// the io_uring and net/http variants, with a tiny window. It checks that
// load flowed without errors and that the topology is gone afterwards;
// it never looks at how fast anything was.
func TestBenchQuickHarness(t *testing.T) {
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "bench.json")
	var stdout, stderr bytes.Buffer
	code := benchMain(context.Background(), &stdout, &stderr, os.Args[0], []string{benchChildEnv + "=1"}, []string{
		"--quick", "--variants", "zerohop-uring,nethttp", "--n", "4", "--warmup", "100ms", "--duration", "300ms",
		"--json", jsonPath})
	if code != 0 {
		t.Fatalf("bench exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Variants) != 2 {
		t.Fatalf("variants: %+v", rep.Variants)
	}
	for _, v := range rep.Variants {
		if v.Skipped != "" || len(v.Points) != 1 {
			t.Errorf("%s: skipped %q, %d points\n%s", v.Name, v.Skipped, len(v.Points), stderr.String())
			continue
		}
		p := v.Points[0]
		if p.Error != "" || p.Outstanding != 4 || p.RPS <= 0 || p.Errors != 0 || p.Requests == 0 || p.RSSBytes <= 0 {
			t.Errorf("%s: point %+v", v.Name, p)
		}
		if v.Name == bench.VariantUring && p.RPSVsNetHTTP <= 0 {
			t.Errorf("no ratio against nethttp: %+v", p)
		}
	}
	if root := topo.MissingCaps(unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN) == ""; root && len(rep.Namespaces) != 2 {
		t.Errorf("namespaces of the run: %q, want the client and server ones", rep.Namespaces)
	}
	for _, ns := range rep.Namespaces {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s still exists after the run", ns)
		}
	}
	if !strings.Contains(stdout.String(), "zerohop-uring") {
		t.Errorf("table lacks the variant:\n%s", stdout.String())
	}
}

// TestBenchNewLoadsAndGnet runs the harness end to end on the gnet and
// netudp variants under the XSK and runtime-client loads (subprocesses
// pinned like a real run), for two tiny points each (N = 1 is the
// runtime-client load's synchronous Calls, N = 4 its Go): every row says which
// load drove it, load flowed without errors, and the client's CPU per
// request was read from /proc. It never looks at how fast anything was.
func TestBenchNewLoadsAndGnet(t *testing.T) {
	topo.RequireRoot(t)
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	code := benchMain(context.Background(), &stdout, &stderr, os.Args[0], []string{benchChildEnv + "=1"}, []string{
		"--variants", "netudp,gnet", "--load", "xsk,engine", "--n", "1,4", "--warmup", "100ms", "--duration", "300ms",
		"--json", jsonPath})
	if code != 0 {
		t.Fatalf("bench exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	rep, err := bench.ReadJSON(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	// runtime-client drives netudp but not gnet.
	want := [][2]string{{bench.VariantNetUDP, bench.LoadXSK}, {bench.VariantNetUDP, bench.LoadEngine}, {bench.VariantGnet, bench.LoadXSK}}
	if len(rep.Variants) != len(want) {
		t.Fatalf("rows: %+v, want %v", rep.Variants, want)
	}
	for i, v := range rep.Variants {
		if v.Name != want[i][0] || v.Load != want[i][1] {
			t.Errorf("row %d is %s (%s), want %s (%s)", i, v.Name, v.Load, want[i][0], want[i][1])
		}
		if v.Skipped != "" || len(v.Points) != 2 {
			t.Errorf("%s: skipped %q, %d points\n%s", v.Label(), v.Skipped, len(v.Points), stderr.String())
			continue
		}
		for _, p := range v.Points {
			if p.Error != "" || p.Requests == 0 || p.Errors != 0 || p.ClientCPUSPerMReq <= 0 || p.CPUSPerMReq <= 0 {
				t.Errorf("%s: point %+v", v.Label(), p)
			}
		}
		if v.LoadDetail == "" {
			t.Errorf("%s: no load detail", v.Label())
		}
	}
	for _, s := range []string{"client CPU s/Mreq", "runtime-client", "gnet"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, stdout.String())
		}
	}
}
