package kv_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles one command of the example into dir.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// TestKVEndToEnd builds server and client, runs the server on a free
// loopback port, does what the README shows, and stops the server with
// SIGTERM, which must exit 0.
func TestKVEndToEnd(t *testing.T) {
	dir := t.TempDir()
	server, client := build(t, dir, "./server"), build(t, dir, "./client")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, server, "--addr", "127.0.0.1:0")
	logs, err := srv.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	addr := ""
	sc := bufio.NewScanner(logs)
	serving := regexp.MustCompile(`serving kv.KV on (\S+) `)
	for addr == "" && sc.Scan() {
		if m := serving.FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("the server never said where it serves: %v", sc.Err())
	}
	go func() { // keep draining the log so the server never blocks on it
		for sc.Scan() {
		}
	}()

	for _, step := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"get", "colour"}, 1, `not found: status APP(16): no key "colour"` + "\n"},
		{[]string{"put", "colour", "blue"}, 0, "replaced: false\n"},
		{[]string{"get", "colour"}, 0, "blue\n"},
		{[]string{"put", "colour", "green"}, 0, "replaced: true\n"},
		{[]string{"get", "colour"}, 0, "green\n"},
		{[]string{"frobnicate"}, 1, ""},
	} {
		cmd := exec.CommandContext(ctx, client, append([]string{"--addr", addr}, step.args...)...)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != step.code || string(out) != step.out {
			t.Errorf("client %s: exit %d, output %q; want exit %d, %q", strings.Join(step.args, " "), code, out, step.code, step.out)
		}
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Errorf("server after SIGTERM: %v, want exit 0", err)
	}
}

// codeLines counts the lines of files that are neither blank nor only a
// comment: the count README.md compares.
func codeLines(t *testing.T, files ...string) int {
	t.Helper()
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "//") {
				n++
			}
		}
	}
	return n
}

// The typed zerohop KV is no longer than the same service with grpc-go,
// and README.md states both counts as they are.
func TestLineCounts(t *testing.T) {
	zerohop := codeLines(t, "server/main.go", "client/main.go", "kvpb/errors.go")
	grpc := codeLines(t, "grpc-equivalent/server.go.txt", "grpc-equivalent/client.go.txt")
	if zerohop > grpc {
		t.Errorf("zerohop KV: %d lines, more than the gRPC one's %d", zerohop, grpc)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("| zerohop, typed (this directory) | %d |", zerohop), fmt.Sprintf("| grpc-go (grpc-equivalent/) | %d |", grpc)} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md lacks the row %q", want)
		}
	}
}
