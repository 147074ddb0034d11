package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
)

// The demo's serving part as root: zerohop serve on AF_XDP in one
// namespace, the burst of calls from the other, a graceful stop.
func TestDemoServesAcrossNamespaces(t *testing.T) {
	tp := topo.New(t, topo.Config{TxChecksumOff: true})
	var out, errOut bytes.Buffer
	if code := demoNamespaces(context.Background(), &out, &errOut, os.Args[0], []string{benchChildEnv + "=1"}, tp); code != 0 {
		t.Fatalf("demo exited %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"backend=xsk", "field 1 = 42", "2000 answered correctly", "shutting down"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	// The server's exit counters saw every call (more when the client
	// retransmitted one: delivery is at least once).
	m := regexp.MustCompile(`requests=(\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no request count in the server's exit log:\n%s", out.String())
	}
	if n, _ := strconv.Atoi(m[1]); n < 2001 {
		t.Errorf("server counted %d requests, want ≥ 2001", n)
	}
}

// Without root the demo serves on loopback with io_uring sockets.
func TestDemoLoopback(t *testing.T) {
	var out bytes.Buffer
	if code := demoLoopback(context.Background(), &out); code != 0 {
		t.Fatalf("demo exited %d\n%s", code, out.String())
	}
	for _, want := range []string{"backend=uring", "field 1 = 42", "2000 answered correctly"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// gone reports whether pid no longer runs (exited, or a zombie waiting for
// its reaper).
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// A server that ignores SIGTERM is killed, with what it started, after the
// grace period, and the demo says so instead of waiting for ever.
func TestDemoStopKillsAServerThatHangs(t *testing.T) {
	// The shell and its sleep ignore SIGTERM (an ignored signal stays
	// ignored across exec).
	cmd := exec.Command("sh", "-c", `trap "" TERM; sleep 1000 & echo "sleep $!" >&2; wait`)
	cmd.SysProcAttr = demoServerAttr()
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	lines := make(chan string, 64)
	sc := bufio.NewScanner(logs)
	if !sc.Scan() {
		t.Fatal("the shell wrote nothing")
	}
	var sleepPID int
	if _, err := fmt.Sscanf(sc.Text(), "sleep %d", &sleepPID); err != nil {
		t.Fatalf("%q: %v", sc.Text(), err)
	}
	go func() {
		defer close(lines)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var errOut bytes.Buffer
	stopped := make(chan struct{})
	start := time.Now()
	go func() { stopDemoServer(cmd, lines, 300*time.Millisecond, &errOut); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second): // only a bound for a stuck stop
		t.Fatal("stopDemoServer still waits 30 s after SIGTERM to a server ignoring it")
	}
	t.Logf("stopped in %v", time.Since(start))
	if !strings.Contains(errOut.String(), "did not stop within 300ms of SIGTERM; killing it") {
		t.Errorf("no note of the kill: %q", errOut.String())
	}
	if cmd.ProcessState == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the server was not reaped after SIGKILL: %v", cmd.ProcessState)
	}
	for i := 0; !gone(sleepPID); i++ { // ≤ 10 s: the group's kill reaches it at once, its reaping may lag
		if i == 1000 {
			t.Fatalf("the server's child %d survived the kill of its group", sleepPID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The demo's server dies with the demo: a demo killed by SIGKILL (no
// cleanup of its own) leaves no `zerohop serve` running in its namespace.
func TestDemoServerDiesWithTheDemo(t *testing.T) {
	topo.RequireRoot(t)
	c := startChild(t, exec.Command(os.Args[0], "demo"))
	pid := c.cmd.Process.Pid
	t.Cleanup(func() {
		// The demo could not remove its namespaces.
		for _, ns := range namespacesOf(pid) {
			if out, err := exec.Command("sh", "-c", "ip netns pids "+ns+" | xargs -r kill -9; ip netns delete "+ns).CombinedOutput(); err != nil {
				t.Logf("removing %s: %v %s", ns, err, out)
			}
		}
	})
	// Once it serves the server is quiet: were it killed while it still
	// logged, its writes to the dead demo's pipe would end it by SIGPIPE
	// even without Pdeathsig.
	if !waitLine(c.stdout, "zerohop serving", nil) {
		t.Fatal("the demo's server never served")
	}
	var server int
	for i := 0; server == 0; i++ {
		if i == 2000 {
			t.Fatalf("within 20 s the demo started no server; children %v", childrenOf(pid))
		}
		time.Sleep(10 * time.Millisecond)
		for _, k := range childrenOf(pid) {
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k)); strings.Contains(string(cmdline), "\x00serve\x00") {
				server = k
			}
		}
	}
	c.cmd.Process.Kill()
	c.finish(t)
	for i := 0; !gone(server); i++ {
		if i == 2000 {
			t.Fatalf("the demo's server %d still runs 20 s after the demo was killed", server)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
