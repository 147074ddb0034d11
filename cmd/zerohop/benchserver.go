package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/bench"
)

// The subprocesses of `zerohop bench`: the peers it compares zerohop with,
// and its load generator. Not meant to be run by hand.

func init() {
	register(command{name: "bench-server", summary: "(internal to bench) run a peer server: nethttp, netudp, raw-xsk, zerohop", run: runBenchServer})
	register(command{name: "bench-client", summary: "(internal to bench) run one load point", run: runBenchClient})
}

func runBenchServer(args []string) int {
	fs := flag.NewFlagSet("bench-server", flag.ContinueOnError)
	kind := fs.String("kind", "", "nethttp, netudp, raw-xsk or zerohop (then `-- serve ARGS…`)")
	addr := fs.String("addr", "", "IP:PORT to serve on")
	iface := fs.String("iface", "", "interface (raw-xsk)")
	queue := fs.Int("queue", 0, "queue (raw-xsk)")
	core := fs.Int("core", -1, "core to pin the loop to (raw-xsk)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file (zerohop)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *kind {
	case "nethttp":
		err = bench.ServeNetHTTP(ctx, *addr)
	case "netudp":
		err = bench.ServeNetUDP(ctx, *addr)
	case "raw-xsk":
		err = bench.ServeRawXSK(ctx, bench.RawXSKConfig{Addr: *addr, Iface: *iface, Queue: *queue, Core: *core})
	case "zerohop":
		rest := fs.Args()
		if len(rest) == 0 || rest[0] != "serve" {
			fmt.Fprintln(os.Stderr, "zerohop bench-server --kind zerohop: want `-- serve ARGS…`")
			return 2
		}
		stop() // serve handles the signals itself
		return serveProfiled(*cpuProfile, rest[1:])
	default:
		fmt.Fprintf(os.Stderr, "zerohop bench-server: unknown --kind %q\n", *kind)
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "zerohop bench-server:", err)
		return 1
	}
	return 0
}

// serveProfiled runs `zerohop serve` with a CPU profile around it.
func serveProfiled(path string, args []string) int {
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "zerohop bench-server:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "zerohop bench-server:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	return runServe(args)
}

func runBenchClient(args []string) int {
	fs := flag.NewFlagSet("bench-client", flag.ContinueOnError)
	var cfg bench.ClientConfig
	fs.StringVar(&cfg.Kind, "kind", bench.LoadGWIR, "gwir or http")
	fs.StringVar(&cfg.Addr, "addr", "", "IP:PORT of the server")
	fs.IntVar(&cfg.Outstanding, "n", 1, "outstanding requests")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up before the measured window")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measured window")
	fs.IntVar(&cfg.PayloadBytes, "payload", 64, "payload bytes per request")
	fs.DurationVar(&cfg.Timeout, "timeout", 500*time.Millisecond, "a request unanswered this long is an error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.RunClient(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "zerohop bench-client:", err)
		return 1
	}
	return 0
}
