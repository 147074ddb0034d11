package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/bench"
	"golang.org/x/sys/unix"
)

func init() {
	register(command{name: "bench", summary: "compare zerohop (XSK, io_uring) with net/http, nginx and a raw XSK loop", run: runBench})
}

func runBench(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "zerohop bench: finding my own binary:", err)
		return 1
	}
	return benchMain(ctx, os.Stdout, os.Stderr, exe, nil, args)
}

// benchMain runs the harness with exe (and extra env) as the binary of the
// subprocesses; tests pass the test binary.
func benchMain(ctx context.Context, stdout, stderr io.Writer, exe string, env []string, args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("n", "1,16,64,256", "outstanding requests per point, comma-separated")
	duration := fs.Duration("duration", 5*time.Second, "measured window per point")
	warmup := fs.Duration("warmup", time.Second, "warm-up before each point")
	payload := fs.Int("payload", 64, "payload bytes per request")
	variants := fs.String("variants", strings.Join(bench.AllVariants, ","), "variants to run, comma-separated")
	queues := fs.Int("queues", 1, "veth and zerohop queues")
	serverCores := fs.String("server-cores", "0", "cores of the server (one per queue)")
	clientCore := fs.Int("client-core", -1, "core of the load generator (default: the last core)")
	jsonPath := fs.String("json", "", "write the results as JSON to this file")
	plotPath := fs.String("plot", "", "write p99 latency against throughput to this PNG")
	markdown := fs.Bool("markdown", false, "print the table as Markdown")
	quick := fs.Bool("quick", false, "fewer, shorter points: done in under a minute")
	noInstall := fs.Bool("no-install", false, "do not apt-get install nginx when it is missing")
	loopback := fs.Bool("loopback", false, "run on loopback without the veth topology, even as root")
	profDir := fs.String("cpuprofile-dir", "", "zerohop servers write CPU profiles into this directory")
	from := fs.String("from", "", "do not run: render the table/plot of a JSON report written by --json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zerohop bench [--quick] [--json FILE] [--plot FILE.png] [--n 1,16,64,256] [--duration 5s]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := bench.Config{Exe: exe, Env: env, Warmup: *warmup, Duration: *duration, PayloadBytes: *payload,
		Queues: *queues, ClientCore: *clientCore, InstallNginx: !*noInstall, ForceLoopback: *loopback,
		CPUProfileDir: *profDir, Progress: stderr, Log: stderr, Terminal: isTerminal(stderr)}
	var err error
	if cfg.Outstanding, err = parseInts(*ns); err != nil {
		fmt.Fprintln(stderr, "zerohop bench: --n:", err)
		return 2
	}
	if cfg.ServerCores, err = parseInts(*serverCores); err != nil {
		fmt.Fprintln(stderr, "zerohop bench: --server-cores:", err)
		return 2
	}
	for _, v := range strings.Split(*variants, ",") {
		v = strings.TrimSpace(v)
		if !contains(bench.AllVariants, v) {
			fmt.Fprintf(stderr, "zerohop bench: unknown variant %q (have %s)\n", v, strings.Join(bench.AllVariants, ", "))
			return 2
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
	}
	var rep *bench.Report
	if *from != "" {
		rep, err = bench.ReadJSON(*from)
	} else {
		rep, err = bench.Run(ctx, cfg)
	}
	if rep != nil {
		if *markdown {
			rep.WriteMarkdown(stdout)
		} else {
			rep.WriteTable(stdout)
		}
		if *jsonPath != "" {
			if werr := rep.WriteJSON(*jsonPath); werr != nil {
				fmt.Fprintln(stderr, "zerohop bench:", werr)
				return 1
			}
		}
		if *plotPath != "" {
			if werr := rep.WritePlot(*plotPath); werr != nil {
				fmt.Fprintln(stderr, "zerohop bench:", werr)
				return 1
			}
		}
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "zerohop bench: interrupted; topology removed")
		return 130
	}
	if err != nil {
		fmt.Fprintln(stderr, "zerohop bench:", err)
		return 1
	}
	return 0
}

func flagSet(fs *flag.FlagSet, name string) bool {
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
