package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

func init() {
	register(command{name: "demo", summary: "show zerohop serving calls on this machine, then a quick benchmark", run: runDemo})
}

func runDemo(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		return fail(os.Stderr, "demo", fmt.Errorf("finding my own binary: %w", err), nil)
	}
	return demoMain(context.Background(), os.Stdout, os.Stderr, exe, nil, args)
}

const demoUsage = `usage: zerohop demo

As root: builds a client and a server network namespace joined by veth,
serves the Echo service with zerohop on AF_XDP, makes a burst of calls and
runs ` + "`zerohop bench --quick`" + `. Without root: the same on loopback with the
io_uring backend. Takes under two minutes and cleans up after itself, also
when interrupted by SIGINT, SIGTERM, SIGHUP or SIGPIPE.`

const demoCalls = 2000

// demoMain serves the demo service, calls it, and runs the quick benchmark.
// As root it does so between two network namespaces with zerohop on AF_XDP;
// without root on loopback with io_uring sockets.
// demoMain runs the demo with exe (and env added to its environment) as
// the binary of its subprocesses; tests pass the test binary.
func demoMain(ctx context.Context, out, errOut io.Writer, exe string, env []string, args []string) int {
	fs := newFlags("demo", demoUsage)
	if code, done := fs.parse(args, out, errOut); done {
		return code
	}
	if fs.NArg() > 0 {
		return fs.usageError(errOut, "unexpected argument %q: demo takes no arguments", fs.Arg(0))
	}
	sig := signalContext(ctx)
	defer sig.stop()
	start := time.Now()
	tp, err := topo.Build(topo.Config{TxChecksumOff: true})
	switch {
	case errors.Is(err, topo.ErrNotPermitted):
		fmt.Fprintf(out, "== not root (%v): serving on loopback with the io_uring backend\n", err)
		if code := demoLoopback(sig, out); code != 0 {
			if sig.received() != nil {
				return sig.interrupted(errOut, "demo", "")
			}
			return code
		}
	case err != nil:
		return fail(errOut, "demo", fmt.Errorf("building the namespaces: %w", err), nil)
	default:
		code := demoNamespaces(sig, out, errOut, exe, env, tp)
		cerr := tp.Close()
		if cerr != nil {
			fmt.Fprintln(errOut, "zerohop demo: removing the namespaces:", cerr)
		}
		if sig.received() != nil {
			cleaned := "its namespaces are gone"
			if cerr != nil {
				cleaned = "removing its namespaces failed"
			}
			return sig.interrupted(errOut, "demo", cleaned)
		}
		if code != 0 {
			return code
		}
	}
	fmt.Fprintln(out, "\n== zerohop bench --quick (ratios are against bare net/http in the same run)")
	if code := benchMain(sig, out, errOut, exe, env, []string{"--quick"}); code != 0 {
		return code
	}
	fmt.Fprintf(out, "\ndemo done in %.0f s. Next: `zerohop probe`, `zerohop serve --addr IP:PORT`, docs/benchmarks.md\n", time.Since(start).Seconds())
	return 0
}

// demoNamespaces runs `exe serve` (with env added to its environment) in
// the topology's server namespace and calls it from the client namespace.
func demoNamespaces(ctx context.Context, out, errOut io.Writer, exe string, env []string, tp *topo.Topology) int {
	link := tp.Links[0]
	addr := netip.AddrPortFrom(link.A.Addr4, 7000)
	fmt.Fprintf(out, "== namespaces %s (server, %s %s) ↔ %s (client, %s %s)\n",
		link.A.Host.Name, link.A.Iface, link.A.Addr4, link.B.Host.Name, link.B.Iface, link.B.Addr4)
	fmt.Fprintf(out, "== zerohop serve --addr %s --iface %s --backend auto\n", addr, link.A.Iface)
	srvCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := link.A.Host.Command(srvCtx, exe, "serve", "--addr", addr.String(), "--iface", link.A.Iface)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = demoServerAttr()
	logs, err := cmd.StderrPipe()
	if err != nil {
		fmt.Fprintln(errOut, "zerohop demo:", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(errOut, "zerohop demo: starting the server:", err)
		return 1
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	stopServer := func() []string { return stopDemoServer(cmd, lines, demoStopGrace, errOut) }
	// Wait for the server to say it serves (and on which backend).
	ready := false
	for !ready {
		select {
		case l, ok := <-lines:
			if !ok {
				fmt.Fprintln(errOut, "zerohop demo: the server exited before serving")
				cmd.Wait()
				return 1
			}
			fmt.Fprintln(out, "   server:", l)
			ready = strings.Contains(l, "zerohop serving")
		case <-time.After(20 * time.Second):
			fmt.Fprintln(errOut, "zerohop demo: the server did not start within 20 s")
			stopServer()
			return 1
		case <-ctx.Done():
			stopServer()
			return 1
		}
	}
	// The engine's sockets live in the namespace it is made in: the
	// client's.
	var eng *runtime.Engine
	if err := link.B.Host.Do(func() (err error) {
		eng, err = runtime.NewEngine()
		return err
	}); err != nil {
		fmt.Fprintln(errOut, "zerohop demo: starting the client engine:", err)
		stopServer()
		return 1
	}
	defer eng.Close()
	client, err := runtime.Dial("udp", addr.String(), runtime.WithEngine(eng))
	if err != nil {
		fmt.Fprintln(errOut, "zerohop demo: dialing:", err)
		stopServer()
		return 1
	}
	code := demoBurst(ctx, out, client)
	client.Close()
	fmt.Fprintln(out, "== stopping the server (SIGTERM: graceful shutdown)")
	for _, l := range stopServer() {
		fmt.Fprintln(out, "   server:", l)
	}
	return code
}

// demoServerAttr is how the demo's server is started: killed with the demo
// (Pdeathsig: an interrupted or crashed demo leaves no server holding the
// XDP attachment in a namespace nobody removes), in a process group of its
// own, so that a Ctrl-C at the terminal reaches only the demo, which
// stops the server itself (one SIGTERM: the terminal's SIGINT and the
// demo's SIGTERM would be two signals, and the second cuts serve's drain
// short), and so that SIGKILL reaches whatever it started.
func demoServerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// demoStopGrace is how long the server has to exit after SIGTERM: serve
// drains for at most 5 s (no --drain-delay) before it closes.
const demoStopGrace = 10 * time.Second

// stopDemoServer stops cmd (started with demoServerAttr) with SIGTERM and
// returns the rest of its log lines. A server still running grace later
// is killed, with its process group, and said so on errOut; one whose
// stderr stays open 5 s after that is waited for without its last lines.
func stopDemoServer(cmd *exec.Cmd, lines <-chan string, grace time.Duration, errOut io.Writer) []string {
	cmd.Process.Signal(syscall.SIGTERM)
	var rest []string
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for killed := false; ; {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				return rest
			}
			rest = append(rest, l)
		case <-timer.C:
			if killed {
				fmt.Fprintln(errOut, "zerohop demo: the server's log stayed open after SIGKILL; not reading the rest")
				cmd.Wait() // the process is gone: Wait closes the pipe
				return rest
			}
			fmt.Fprintf(errOut, "zerohop demo: the server did not stop within %v of SIGTERM; killing it (SIGKILL)\n", grace)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			killed = true
			timer.Reset(5 * time.Second)
		}
	}
}

func demoLoopback(ctx context.Context, out io.Writer) int {
	srv, err := runtime.Listen("udp", "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring),
		runtime.WithLogger(slog.New(slog.NewTextHandler(out, nil))))
	if err != nil {
		fmt.Fprintln(out, "zerohop demo:", err)
		return 1
	}
	echo.Register(srv)
	if err := srv.Start(); err != nil {
		fmt.Fprintln(out, "zerohop demo:", err)
		return 1
	}
	defer srv.Shutdown(context.Background())
	client, err := runtime.Dial("udp", srv.Addr().String())
	if err != nil {
		fmt.Fprintln(out, "zerohop demo:", err)
		return 1
	}
	defer client.Close()
	return demoBurst(ctx, out, client)
}

// demoBurst makes one Sum call and a burst of pipelined Echo calls, and
// prints what came back.
func demoBurst(ctx context.Context, out io.Writer, c *runtime.Client) int {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var sumReq []byte
	for _, v := range []uint64{19, 23} {
		sumReq = protowire.AppendVarint(protowire.AppendTag(sumReq, 1, protowire.VarintType), v)
	}
	r, err := c.Call(ctx, echo.SumMethod, sumReq, nil)
	if err != nil {
		fmt.Fprintln(out, "zerohop demo: Sum:", err)
		return 1
	}
	sum, n := protowire.ConsumeVarint(r.Payload[min(1, len(r.Payload)):])
	if n < 0 {
		fmt.Fprintf(out, "zerohop demo: Sum reply % x does not decode\n", r.Payload)
		return 1
	}
	fmt.Fprintf(out, "== call zerohop.Echo/Sum {1: 19, 1: 23} → status %v, field 1 = %d\n", r.Status, sum)

	const window = 64
	done := make(chan *runtime.Call, window)
	started := map[*runtime.Call]time.Time{}
	var latencies []time.Duration
	payload := []byte("\x0a\x0ahello GWIR")
	begin := time.Now()
	issued, failed := 0, 0
	for issued < window {
		started[c.Go(ctx, echo.EchoMethod, payload, nil, done)] = time.Now()
		issued++
	}
	for finished := 0; finished < demoCalls; finished++ {
		call := <-done
		latencies = append(latencies, time.Since(started[call]))
		delete(started, call)
		if call.Err != nil || string(call.Reply.Payload) != string(payload) {
			failed++
		}
		call.Release()
		if issued < demoCalls {
			started[c.Go(ctx, echo.EchoMethod, payload, nil, done)] = time.Now()
			issued++
		}
	}
	elapsed := time.Since(begin)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	fmt.Fprintf(out, "== burst of %d zerohop.Echo/Echo calls, %d outstanding: %d answered correctly in %v (%.0f calls/s), p50 %v, p99 %v\n",
		demoCalls, window, demoCalls-failed, elapsed.Round(time.Millisecond), float64(demoCalls)/elapsed.Seconds(),
		latencies[len(latencies)/2].Round(time.Microsecond), latencies[len(latencies)*99/100].Round(time.Microsecond))
	fmt.Fprintln(out, "   (this is the runtime.Client: one goroutine hand-off per call, sharing a core with the client loop; zerohop bench below uses a batched load generator)")
	if failed > 0 {
		return 1
	}
	return 0
}
