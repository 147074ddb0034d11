package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A binary built by `go build` from this checkout reports the checkout's
// commit (the test binary itself carries no VCS stamp, so build one).
func TestVersionReportsTheCommit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout (git rev-parse HEAD: %v): nothing to compare the revision with", err)
	}
	bin := filepath.Join(t.TempDir(), "zerohop")
	// -buildvcs=true: this machine's go env may turn stamping off.
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if info, err := exec.Command("go", "version", "-m", bin).Output(); err != nil || !strings.Contains(string(info), "vcs.revision=") {
		// The go command stamps nothing in a git worktree (.git is a file
		// there); the binary must then say so rather than invent one.
		text, _ := exec.Command(bin, "version").Output()
		if !strings.Contains(string(text), "revision unknown") {
			t.Errorf("unstamped binary: zerohop version says\n%s", text)
		}
		t.Skipf("go build stamped no VCS revision in this checkout (a git worktree?); checked only that version says so")
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatalf("zerohop version --json: %v", err)
	}
	var v buildVersion
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v.Module != "github.com/zerohop/zerohop" || v.Revision != strings.TrimSpace(string(head)) || v.Time == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("version %+v; want module github.com/zerohop/zerohop at revision %s", v, head)
	}
	text, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(text), "revision "+v.Revision) {
		t.Errorf("zerohop version: %v\n%s", err, text)
	}
}
