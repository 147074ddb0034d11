package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
)

// Every long-running command ends cleanly on each of these signals: a
// subprocess (the test binary as zerohop) is started, the test waits until
// it holds what it must clean up, sends the signal, and checks the exit
// status and that nothing is left behind.
var cleanupSignals = []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE}

// child is a running `zerohop …` subprocess.
type child struct {
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	stderr *bufio.Scanner
	errLog *syncBuffer // stderr so far; waitLine and finish add to it
	done   chan struct{}
	outR   io.Closer // the read end of stdout
	// waiting is set once finish owns cmd.Wait: cleanup then waits for
	// done instead of calling Wait a second time.
	waiting bool
}

func startChild(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdout: bufio.NewScanner(out), stderr: bufio.NewScanner(errOut), errLog: &syncBuffer{}, done: make(chan struct{}), outR: out}
	t.Cleanup(func() {
		select {
		case <-c.done:
		default: // the test failed before finish, or finish gave up
			cmd.Process.Kill()
			if !c.waiting {
				cmd.Wait()
				return
			}
			select {
			case <-c.done:
			case <-time.After(10 * time.Second): // something else holds its stderr open
			}
		}
	})
	return c
}

// waitLine reads s until a line contains want; false if s ends first.
func waitLine(s *bufio.Scanner, want string, log io.Writer) bool {
	for s.Scan() {
		if log != nil {
			io.WriteString(log, s.Text()+"\n")
		}
		if strings.Contains(s.Text(), want) {
			return true
		}
	}
	return false
}

// finish drains the child's output and waits for it, at most a minute.
func (c *child) finish(t *testing.T) (int, string) {
	t.Helper()
	code, logs, err := c.finishWithin(time.Minute)
	if err != nil {
		t.Fatalf("%v; stderr:\n%s", err, logs)
	}
	return code, logs
}

// finishWithin drains the child's output and waits at most d for it to
// exit. If it does not, it is killed, and its stderr is read only once
// the reader has seen the end of it (or after 10 s more, when something
// else holds the pipe open): read before, it would race the reader and
// miss the last lines.
func (c *child) finishWithin(d time.Duration) (code int, logs string, err error) {
	c.waiting = true
	go func() {
		for c.stdout.Scan() {
		}
	}()
	rest := make(chan struct{})
	go func() {
		for c.stderr.Scan() {
			io.WriteString(c.errLog, c.stderr.Text()+"\n")
		}
		close(rest)
	}()
	exited := make(chan error, 1)
	go func() {
		<-rest
		err := c.cmd.Wait()
		close(c.done) // before exited: whoever hears of the exit sees done closed
		exited <- err
	}()
	select {
	case err := <-exited:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), c.errLog.String(), nil
		}
		return 0, c.errLog.String(), err
	case <-time.After(d):
		c.cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		return 0, c.errLog.String(), fmt.Errorf("still running %v after the signal (killed)", d)
	}
}

// namespacesOf lists the network namespaces topo made in process pid.
func namespacesOf(pid int) []string {
	re := regexp.MustCompile(fmt.Sprintf(`^zh%x[0-9a-f]+-h\d+$`, pid&0xffff))
	entries, _ := os.ReadDir("/var/run/netns")
	var out []string
	for _, e := range entries {
		if re.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// childrenOf lists the child processes of pid.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(data)) {
			var k int
			if _, err := fmt.Sscan(f, &k); err == nil {
				out = append(out, k)
			}
		}
	}
	return out
}

func xdpAttached(t *testing.T, h *topo.Host, iface string) bool {
	t.Helper()
	out, err := h.Command(t.Context(), "ip", "-d", "link", "show", "dev", iface).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show %s: %v: %s", iface, err, out)
	}
	return strings.Contains(string(out), "prog/xdp")
}

func TestServeCleansUpOnSignals(t *testing.T) {
	for _, sig := range cleanupSignals {
		t.Run(signalName(sig), func(t *testing.T) {
			link := topo.Pair(t, topo.Config{TxChecksumOff: true})
			addr := link.A.Addr4.String() + ":7000"
			c := startChild(t, link.A.Host.Command(context.Background(), os.Args[0], "serve", "--addr", addr, "--iface", link.A.Iface, "--backend", "xsk"))
			if !waitLine(c.stderr, "zerohop serving", c.errLog) {
				t.Fatalf("serve never served:\n%s", c.errLog.String())
			}
			if !xdpAttached(t, link.A.Host, link.A.Iface) {
				t.Fatal("no XDP program attached while serving")
			}
			c.cmd.Process.Signal(sig)
			code, logs := c.finish(t)
			if code != 0 || !strings.Contains(logs, "signal="+signalName(sig)) {
				t.Errorf("exit %d, want 0 after a clean shutdown on %v:\n%s", code, signalName(sig), logs)
			}
			if xdpAttached(t, link.A.Host, link.A.Iface) {
				t.Errorf("XDP program still attached to %s after %v", link.A.Iface, signalName(sig))
			}
		})
	}
}

// The harness's namespaces (and with them its veths, XDP programs and
// servers) are gone after each signal.
func TestBenchCleansUpOnSignals(t *testing.T) {
	topo.RequireRoot(t)
	for _, sig := range cleanupSignals {
		t.Run(signalName(sig), func(t *testing.T) {
			c := startChild(t, exec.Command(os.Args[0], "bench", "--variants", "zerohop-uring", "--n", "1",
				"--warmup", "0s", "--duration", "60s", "--no-install"))
			pid := c.cmd.Process.Pid
			// Wait until the harness runs its first server (`zerohop
			// serve` in the server namespace) with the load against it.
			var kids []int
			for i := 0; len(namespacesOf(pid)) < 2 || len(kids) == 0; i++ {
				if i == 2000 {
					t.Fatalf("within 20 s bench made namespaces %v and subprocesses %v", namespacesOf(pid), kids)
				}
				time.Sleep(10 * time.Millisecond)
				kids = kids[:0]
				for _, k := range childrenOf(pid) {
					if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k)); strings.Contains(string(cmdline), "\x00serve\x00") {
						kids = append(kids, k)
					}
				}
			}
			c.cmd.Process.Signal(sig)
			code, logs := c.finish(t)
			for _, k := range kids {
				if err := syscall.Kill(k, 0); err == nil {
					t.Errorf("bench's subprocess %d still runs after %v", k, signalName(sig))
				}
			}
			if code != 128+int(sig) || !strings.Contains(logs, "interrupted by "+signalName(sig)) {
				t.Errorf("exit %d, want %d and a note:\n%s", code, 128+int(sig), logs)
			}
			if left := namespacesOf(pid); len(left) > 0 {
				t.Errorf("namespaces left after %v: %v", signalName(sig), left)
			}
		})
	}
}

func TestDemoCleansUpOnSignals(t *testing.T) {
	topo.RequireRoot(t)
	for _, sig := range append(cleanupSignals, 0) {
		name := signalName(sig)
		if sig == 0 {
			name = "broken-stdout-pipe"
		}
		t.Run(name, func(t *testing.T) {
			c := startChild(t, exec.Command(os.Args[0], "demo"))
			if !waitLine(c.stdout, "== namespaces", nil) {
				t.Fatal("demo never made its namespaces")
			}
			pid := c.cmd.Process.Pid
			if len(namespacesOf(pid)) != 2 {
				t.Fatalf("namespaces of the demo: %v", namespacesOf(pid))
			}
			want := int(sig)
			if sig == 0 {
				// `zerohop demo | head -1`: the reader goes away and the
				// next write raises SIGPIPE.
				c.outR.Close()
				want = int(syscall.SIGPIPE)
			} else {
				c.cmd.Process.Signal(sig)
			}
			code, logs := c.finish(t)
			if code != 128+want || !strings.Contains(logs, "interrupted by") {
				t.Errorf("exit %d, want %d:\n%s", code, 128+want, logs)
			}
			if left := namespacesOf(pid); len(left) > 0 {
				t.Errorf("namespaces left: %v\n%s", left, logs)
			}
		})
	}
}

// silentServer is a loopback UDP socket that reads requests and never
// answers; got yields once the first datagram arrived.
func silentServer(t *testing.T) (addr string, got <-chan struct{}) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() {
		buf := make([]byte, 2048)
		if _, _, err := conn.ReadFrom(buf); err == nil {
			close(ch)
		}
		for {
			if _, _, err := conn.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return conn.LocalAddr().String(), ch
}

// call and ping retransmit until answered: a signal ends them at once.
func TestCallAndPingStopOnSignals(t *testing.T) {
	for _, cmd := range [][]string{{"call", "--timeout", "60s", "zerohop.Echo/Echo"}, {"ping", "--count", "5", "--timeout", "60s"}} {
		for _, sig := range cleanupSignals {
			t.Run(cmd[0]+"/"+signalName(sig), func(t *testing.T) {
				addr, got := silentServer(t)
				c := startChild(t, exec.Command(os.Args[0], append([]string{cmd[0], "--addr", addr}, cmd[1:]...)...))
				select {
				case <-got:
				case <-time.After(20 * time.Second):
					t.Fatal("nothing was sent within 20 s")
				}
				c.cmd.Process.Signal(sig)
				code, logs := c.finish(t)
				if code != 128+int(sig) || !strings.Contains(logs, "interrupted by "+signalName(sig)) {
					t.Errorf("exit %d, stderr %q; want %d and a note", code, logs, 128+int(sig))
				}
			})
		}
	}
}

// A child that outlives finishWithin's bound while it writes stderr is
// killed and reaped before its log is read: the log holds its output and,
// under -race, reading it does not race the reader goroutine.
func TestChildFinishKillsBeforeReading(t *testing.T) {
	c := startChild(t, exec.Command("sh", "-c", `echo started >&2; while :; do echo more >&2; done`))
	if !waitLine(c.stderr, "started", c.errLog) {
		t.Fatal("the child never started")
	}
	_, logs, err := c.finishWithin(200 * time.Millisecond)
	if err == nil {
		t.Fatalf("finishWithin returned no error for a child that runs until killed; stderr %d bytes", len(logs))
	}
	if !strings.HasPrefix(logs, "started\n") || !strings.Contains(logs, "more\n") {
		t.Errorf("stderr lacks the child's lines: %.200q", logs)
	}
	select {
	case <-c.done:
	default:
		t.Error("finishWithin returned before the child was reaped")
	}
}

// A second signal during serve's drain (here a ten-minute --drain-delay)
// stops it at once: exit 128+signal, a note saying so, and the XDP
// program detached by the same cleanup as a graceful stop.
func TestServeStopsOnSecondSignal(t *testing.T) {
	for _, sigs := range [][2]syscall.Signal{{syscall.SIGINT, syscall.SIGINT}, {syscall.SIGTERM, syscall.SIGINT}} {
		t.Run(signalName(sigs[0])+"-"+signalName(sigs[1]), func(t *testing.T) {
			link := topo.Pair(t, topo.Config{TxChecksumOff: true})
			addr := link.A.Addr4.String() + ":7000"
			c := startChild(t, link.A.Host.Command(context.Background(), os.Args[0], "serve", "--addr", addr, "--iface", link.A.Iface,
				"--backend", "xsk", "--drain-delay", "10m"))
			if !waitLine(c.stderr, "zerohop serving", c.errLog) {
				t.Fatalf("serve never served:\n%s", c.errLog.String())
			}
			c.cmd.Process.Signal(sigs[0])
			if !waitLine(c.stderr, "shutting down", c.errLog) {
				t.Fatalf("serve did not start draining on %v:\n%s", signalName(sigs[0]), c.errLog.String())
			}
			c.cmd.Process.Signal(sigs[1])
			// Without the second signal serve would drain for ten
			// minutes; 30 s is only a bound for a stuck child.
			start := time.Now()
			code, logs, err := c.finishWithin(30 * time.Second)
			if err != nil {
				t.Fatalf("%v: the second %v did not stop the drain; stderr:\n%s", err, signalName(sigs[1]), logs)
			}
			t.Logf("exited %v after the second signal", time.Since(start))
			if code != 128+int(sigs[1]) || !strings.Contains(logs, "stopped at once by a second "+signalName(sigs[1])) {
				t.Errorf("exit %d, want %d and a note:\n%s", code, 128+int(sigs[1]), logs)
			}
			if !strings.Contains(logs, "press Ctrl-C again") {
				t.Errorf("the drain's log line does not say how to stop at once:\n%s", logs)
			}
			if xdpAttached(t, link.A.Host, link.A.Iface) {
				t.Errorf("XDP program still attached to %s after the forced stop", link.A.Iface)
			}
		})
	}
}
