package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/internal/sysinfo"
	"github.com/zerohop/zerohop/internal/topo"
)

func TestMain(m *testing.M) { leak.Main(m) }

func TestProbeJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := probe(&out, &errOut, []string{"--json"}); code != 0 {
		t.Fatalf("probe --json exited %d: %s", code, errOut.String())
	}
	var report probeReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if report.Kernel == "" || strings.HasPrefix(report.Kernel, "unknown") {
		t.Errorf("kernel %q", report.Kernel)
	}
	rows := map[string]probeRow{}
	for _, r := range report.Rows {
		rows[r.Section+"/"+r.Name] = r
	}
	for _, want := range []string{
		"io_uring opcodes/RECVMSG", "io_uring opcodes/SENDMSG", "io_uring opcodes/MSG_RING",
		"io_uring opcodes/POLL_ADD", "io_uring opcodes/SEND_ZC",
		"io_uring features/multishot RECV/RECVMSG", "io_uring features/provided buffer rings",
		"io_uring setup flags/SINGLE_ISSUER", "io_uring setup flags/DEFER_TASKRUN",
		"io_uring setup flags/COOP_TASKRUN", "io_uring setup flags/SQPOLL", "io_uring setup flags/NO_SQARRAY",
		"system/BTF", "system/CAP_NET_ADMIN", "af_xdp/AF_XDP socket",
	} {
		r, ok := rows[want]
		if !ok {
			t.Errorf("no row %q", want)
			continue
		}
		// Linux 6.18 as root: every one of these is available.
		if r.OK == nil || !*r.OK || r.Value != "yes" {
			t.Errorf("row %q = %+v, want yes", want, r)
		}
	}
	if _, ok := rows["system/RLIMIT_MEMLOCK"]; !ok {
		t.Error("no RLIMIT_MEMLOCK row")
	}
}

func TestProbeTable(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := probe(&out, &errOut, nil); code != 0 {
		t.Fatalf("probe exited %d: %s", code, errOut.String())
	}
	for _, want := range []string{"kernel", "io_uring opcodes", "RECVMSG", "DEFER_TASKRUN", "RLIMIT_MEMLOCK", "CAP_BPF"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if code := probe(&out, &errOut, []string{"--bogus"}); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

// probeJSON runs `zerohop probe --json args...` and returns its rows by
// "section/name".
func probeJSON(t *testing.T, args ...string) map[string]probeRow {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := probe(&out, &errOut, append([]string{"--json"}, args...)); code != 0 {
		t.Fatalf("probe %v exited %d: %s", args, code, errOut.String())
	}
	var report probeReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	rows := map[string]probeRow{}
	for _, r := range report.Rows {
		rows[r.Section+"/"+r.Name] = r
	}
	return rows
}

// On a veth, probed from inside its namespace: XDP attaches in both modes,
// AF_XDP binds in copy mode only (the kernel facts measured in DESIGN.md).
func TestProbeAFXDPOnVeth(t *testing.T) {
	link := topo.Pair(t, topo.Config{})
	var rows map[string]probeRow
	if err := link.A.Host.Do(func() error {
		rows = probeJSON(t, "--iface", link.A.Iface, "--queue", "0")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"AF_XDP socket":         true,
		"XDP native":            true,
		"XDP generic":           true,
		"AF_XDP zero-copy bind": false,
		"AF_XDP copy bind":      true,
	} {
		r, ok := rows["af_xdp/"+name]
		if !ok {
			t.Errorf("no row af_xdp/%s", name)
			continue
		}
		if r.OK == nil || *r.OK != want {
			t.Errorf("row af_xdp/%s = %+v, want ok %v", name, r, want)
		}
	}
	if r := rows["af_xdp/interface"]; !strings.Contains(r.Value, link.A.Iface) {
		t.Errorf("interface row %+v does not name %s", r, link.A.Iface)
	}
	if r := rows["af_xdp/AF_XDP zero-copy bind"]; !strings.Contains(r.Detail, "EOPNOTSUPP") {
		t.Errorf("zero-copy row %+v does not say why", r)
	}
	backendRow := "backend/runtime.Listen " + link.A.Addr4.String() + ":7000"
	if r := rows[backendRow]; r.Value != "xsk" || !strings.Contains(rows["backend/reason"].Value, link.A.Iface) {
		t.Errorf("row %s = %+v, reason %+v; want xsk on %s", backendRow, r, rows["backend/reason"], link.A.Iface)
	}
}

// Without an interface the probe reports the loopback fallback and why.
func TestProbeBackendLoopback(t *testing.T) {
	rows := probeJSON(t)
	if r := rows["backend/runtime.Listen 127.0.0.1:7000"]; r.Value != "uring" {
		t.Errorf("backend row %+v, want uring", r)
	}
	if r := rows["backend/reason"]; !strings.Contains(r.Value, "loopback") {
		t.Errorf("reason row %+v does not say loopback", r)
	}
}

// A missing interface is one clear error row in a full report, and the
// probe exits 1 saying which flag named it.
func TestProbeAFXDPMissingInterface(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := probe(&out, &errOut, []string{"--json", "--iface", "zh-no-such-if"}); code != 1 || !strings.Contains(errOut.String(), "--iface zh-no-such-if") {
		t.Fatalf("probe --iface zh-no-such-if: exit %d, stderr %q; want 1 naming --iface", code, errOut.String())
	}
	var report probeReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	rows := map[string]probeRow{}
	for _, r := range report.Rows {
		rows[r.Section+"/"+r.Name] = r
	}
	r, ok := rows["af_xdp/interface"]
	if !ok || r.OK == nil || *r.OK || r.Value != "not found" || !strings.Contains(r.Detail, "zh-no-such-if") {
		t.Errorf("interface row %+v, want ok false, not found, naming the interface", r)
	}
	for _, name := range []string{"XDP native", "XDP generic", "AF_XDP zero-copy bind", "AF_XDP copy bind"} {
		if r, ok := rows["af_xdp/"+name]; ok {
			t.Errorf("row %s = %+v for a missing interface", name, r)
		}
	}
	if code := probe(&out, &errOut, []string{"--iface", "x", "--queue", "-1"}); code != 2 {
		t.Errorf("--queue -1: exit %d, want 2", code)
	}
}

// --iface shows the queue map of a 2-queue veth (virtual, no per-queue
// IRQs: queue mod CPUs) in the table, the JSON rows and the JSON
// queue_map, and the XDP program: none, then the zerohop program a server
// holds.
func TestProbeQueueMapOnVeth(t *testing.T) {
	link := topo.Pair(t, topo.Config{Queues: 2})
	var report probeReport
	var table bytes.Buffer
	if err := link.A.Host.Do(func() error {
		var out, errOut bytes.Buffer
		if code := probe(&out, &errOut, []string{"--json", "--iface", link.A.Iface}); code != 0 {
			return fmt.Errorf("probe exited %d: %s", code, errOut.String())
		}
		if code := probe(&table, &errOut, []string{"--iface", link.A.Iface}); code != 0 {
			return fmt.Errorf("probe exited %d: %s", code, errOut.String())
		}
		return json.Unmarshal(out.Bytes(), &report)
	}); err != nil {
		t.Fatal(err)
	}
	qm := report.QueueMap
	if qm == nil || qm.RXQueues != 2 || !qm.Virtual || len(qm.Queues) != 2 {
		t.Fatalf("queue_map = %+v; want 2 queues of a virtual interface", qm)
	}
	rows := map[string]probeRow{}
	for _, r := range report.Rows {
		rows[r.Section+"/"+r.Name] = r
	}
	for q, entry := range qm.Queues {
		r := rows[fmt.Sprintf("queues/queue %d", q)]
		if entry.Source != sysinfo.CPUFromQueueModulo || entry.IRQ != -1 || r.Value != fmt.Sprintf("CPU %d", entry.CPU) ||
			!strings.Contains(r.Detail, string(sysinfo.CPUFromQueueModulo)) {
			t.Errorf("queue %d: map %+v, row %+v; want queue mod CPUs, no IRQ", q, entry, r)
		}
	}
	if r := rows["queues/interface kind"]; r.Value != "virtual" {
		t.Errorf("interface kind row %+v, want virtual", r)
	}
	if r := rows["af_xdp/XDP program"]; r.Value != "none" {
		t.Errorf("XDP program row %+v, want none", r)
	}
	for _, want := range []string{"queue 0", "queue 1", "queue-mod-cpus", "rx queues"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}

	// With a server holding the interface, the probe names its program
	// and does not disturb it.
	var p *bpf.Program
	if err := link.A.Host.Do(func() (err error) { p, err = bpf.Join(link.A.Iface, bpf.Options{}); return err }); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := link.A.Host.Do(func() error {
		rows = probeJSON(t, "--iface", link.A.Iface)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r := rows["af_xdp/XDP program"]; !strings.Contains(r.Value, fmt.Sprintf("zerohop (id %d", p.ID())) || !strings.Contains(r.Detail, "1 servers") {
		t.Errorf("XDP program row %+v; want zerohop program %d with 1 server", r, p.ID())
	}
	if r := rows["af_xdp/XDP native"]; r.Value != "in use" {
		t.Errorf("XDP native row %+v, want in use", r)
	}
	if _, err := p.Counters(); err != nil {
		t.Fatalf("the server's program after the probe: %v", err)
	}
}
