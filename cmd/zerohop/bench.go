package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/zerohop/zerohop/bench"
	"golang.org/x/sys/unix"
)

func init() {
	register(command{name: "bench", summary: "compare zerohop (XSK, io_uring) with net/http, nginx and a raw XSK loop", run: runBench})
}

func runBench(args []string) int {
	exe, err := os.Executable()
	if err != nil {
		return fail(os.Stderr, "bench", fmt.Errorf("finding my own binary: %w", err), nil)
	}
	return benchMain(context.Background(), os.Stdout, os.Stderr, exe, nil, args)
}

const benchUsage = `usage: zerohop bench [--quick] [--json FILE] [--plot FILE.png] [--n 1,16,64,256] [--duration 5s] [--load kernel-udp,xsk,runtime-client]

Runs the benchmark harness (docs/benchmarks.md): as root between two
network namespaces it builds, otherwise on loopback. Every variant serves
in turn and is driven by the same closed-loop load; a GWIR variant once per
load generator in --load (one row each). Ends cleanly, removing its
namespaces, on SIGINT, SIGTERM, SIGHUP and SIGPIPE.`

// maxBenchPayload is the largest payload whose request is one unfragmented
// datagram on the harness's veth (MTU 1500: 20 IP + 8 UDP + 24 GWIR bytes).
const maxBenchPayload = 1500 - 20 - 8 - 24

// benchMain runs the harness with exe (and extra env) as the binary of the
// subprocesses; tests pass the test binary.
func benchMain(ctx context.Context, stdout, stderr io.Writer, exe string, env []string, args []string) int {
	fs := newFlags("bench", benchUsage)
	ns := fs.String("n", "1,16,64,256", "outstanding requests per point, comma-separated")
	duration := fs.Duration("duration", 5*time.Second, "measured window per point")
	warmup := fs.Duration("warmup", time.Second, "warm-up before each point")
	payload := fs.Int("payload", 64, "payload bytes per request")
	variants := fs.String("variants", strings.Join(bench.AllVariants, ","), "variants to run, comma-separated")
	loads := fs.String("load", strings.Join(bench.AllGWIRLoads, ","), "GWIR load generators, comma-separated: kernel-udp, xsk (AF_XDP, root), runtime-client (zerohop's engine; drives "+strings.Join(bench.EngineLoadVariants, " and ")+" only)")
	queues := fs.Int("queues", 1, "veth and zerohop queues")
	serverCores := fs.String("server-cores", "0", "cores of the server (one per queue)")
	clientCore := fs.Int("client-core", -1, "core of the load generator (default: the last core)")
	jsonPath := fs.String("json", "", "write the results as JSON to this file")
	plotPath := fs.String("plot", "", "write p99 latency against throughput to this PNG")
	markdown := fs.Bool("markdown", false, "print the table as Markdown")
	quick := fs.Bool("quick", false, "fewer, shorter points and one GWIR load (xsk as root, else kernel-udp) unless --load says: done in under a minute")
	noInstall := fs.Bool("no-install", false, "do not apt-get install nginx when it is missing")
	loopback := fs.Bool("loopback", false, "run on loopback without the veth topology, even as root")
	profDir := fs.String("cpuprofile-dir", "", "zerohop servers write CPU profiles into this directory")
	from := fs.String("from", "", "do not run: render the table/plot of a JSON report written by --json")
	if code, done := fs.parse(args, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() > 0:
		return fs.usageError(stderr, "unexpected argument %q: bench takes only flags", fs.Arg(0))
	case *duration <= 0:
		return fs.usageError(stderr, "--duration %v: the measured window must be positive, e.g. --duration 5s", *duration)
	case *warmup < 0:
		return fs.usageError(stderr, "--warmup %v is negative: give 0 for no warm-up, or e.g. --warmup 1s", *warmup)
	case *payload < 0 || *payload > maxBenchPayload:
		return fs.usageError(stderr, "--payload %d: want 0..%d bytes (one unfragmented datagram at MTU 1500)", *payload, maxBenchPayload)
	case *queues < 1:
		return fs.usageError(stderr, "--queues %d: must be at least 1", *queues)
	case *clientCore < -1:
		return fs.usageError(stderr, "--client-core %d: give a CPU number, or -1 for the last core", *clientCore)
	case *plotPath != "" && writePlot == nil:
		return fs.usageError(stderr, "--plot: this zerohop was built without the plotting stack; build it with `go build -tags plot ./cmd/zerohop`, or render the JSON of a run later with `go run -tags plot ./cmd/zerohop bench --from FILE.json --plot FILE.png`")
	}
	cfg := bench.Config{Exe: exe, Env: env, Warmup: *warmup, Duration: *duration, PayloadBytes: *payload,
		Queues: *queues, ClientCore: *clientCore, InstallNginx: !*noInstall, ForceLoopback: *loopback,
		CPUProfileDir: *profDir, Progress: stderr, Log: stderr, Terminal: isTerminal(stderr)}
	var err error
	if cfg.Outstanding, err = parseInts(*ns); err != nil {
		return fs.usageError(stderr, "--n %q: want comma-separated counts of outstanding requests, e.g. --n 1,64", *ns)
	}
	for _, n := range cfg.Outstanding {
		if n < 1 {
			return fs.usageError(stderr, "--n %q: every count of outstanding requests must be at least 1", *ns)
		}
	}
	if cfg.ServerCores, err = parseInts(*serverCores); err != nil || anyNegative(cfg.ServerCores) {
		return fs.usageError(stderr, "--server-cores %q: want comma-separated CPU numbers ≥ 0", *serverCores)
	}
	if cfg.Loads, err = bench.ParseLoads(*loads); err != nil {
		return fs.usageError(stderr, "--load: %v", err)
	}
	for _, v := range strings.Split(*variants, ",") {
		v = strings.TrimSpace(v)
		if !contains(bench.AllVariants, v) {
			return fs.usageError(stderr, "--variants: unknown variant %q; have %s", v, strings.Join(bench.AllVariants, ", "))
		}
		cfg.Variants = append(cfg.Variants, v)
	}
	if *quick {
		if !flagSet(fs, "n") {
			cfg.Outstanding = []int{1, 64}
		}
		if !flagSet(fs, "duration") {
			cfg.Duration = 1500 * time.Millisecond
		}
		if !flagSet(fs, "warmup") {
			cfg.Warmup = 300 * time.Millisecond
		}
		// One GWIR load: the one that limits the servers least.
		if !flagSet(fs, "load") {
			cfg.Loads = []string{bench.LoadKernelUDP}
			if bench.XSKLoadAvailable(*loopback) {
				cfg.Loads = []string{bench.LoadXSK}
			}
		}
	}
	sig := signalContext(ctx)
	defer sig.stop()
	var rep *bench.Report
	if *from != "" {
		rep, err = bench.ReadJSON(*from)
	} else {
		rep, err = bench.Run(sig, cfg)
	}
	if rep != nil {
		if *markdown {
			rep.WriteMarkdown(stdout)
		} else {
			rep.WriteTable(stdout)
		}
		if *jsonPath != "" {
			if werr := rep.WriteJSON(*jsonPath); werr != nil {
				return fail(stderr, "bench", werr, nil)
			}
		}
		if *plotPath != "" {
			if werr := writePlot(rep, *plotPath); werr != nil {
				return fail(stderr, "bench", werr, nil)
			}
		}
	}
	if sig.received() != nil || errors.Is(err, context.Canceled) {
		return sig.interrupted(stderr, "bench", "its namespaces and servers are gone")
	}
	if err != nil {
		return fail(stderr, "bench", err, nil)
	}
	return exitOK
}

// writePlot renders p99 latency against throughput; nil unless built with
// the plot tag (bench_plot.go). The plotting stack (gonum/plot, its fonts
// and PDF/SVG back ends) made 7.6 of the binary's 21.2 MB.
var writePlot func(rep *bench.Report, path string) error

func flagSet(fs *cmdFlags, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
