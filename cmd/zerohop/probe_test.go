package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/zerohop/zerohop/internal/leak"
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
		"system/BTF", "system/CAP_NET_ADMIN",
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
