package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/zerohop/zerohop/bench"
)

// The subprocesses of `zerohop bench`: the peers it compares zerohop with,
// and its load generator. Not meant to be run by hand.

func init() {
	register(command{name: "bench-server", summary: "(internal to bench) run a peer server: nethttp, netudp, gnet, raw-xsk, zerohop", hidden: true, run: runBenchServer})
	register(command{name: "bench-client", summary: "(internal to bench) run one load point", hidden: true, run: runBenchClient})
}

func runBenchServer(args []string) int {
	fs := newFlags("bench-server", "usage: zerohop bench-server --kind KIND --addr IP:PORT [-- serve ARGS…]\n\nInternal to `zerohop bench`: runs one of the servers it compares.")
	kind := fs.String("kind", "", "nethttp, netudp, gnet, raw-xsk or zerohop (then `-- serve ARGS…`)")
	addr := fs.String("addr", "", "IP:PORT to serve on")
	iface := fs.String("iface", "", "interface (raw-xsk)")
	queue := fs.Int("queue", 0, "queue (raw-xsk)")
	core := fs.Int("core", -1, "core to pin the loop to (raw-xsk)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file (zerohop)")
	if code, done := fs.parse(args, os.Stdout, os.Stderr); done {
		return code
	}
	sig := signalContext(context.Background())
	defer sig.stop()
	ctx, stop := context.Context(sig), sig.stop
	var err error
	switch *kind {
	case "nethttp":
		err = bench.ServeNetHTTP(ctx, *addr)
	case "netudp":
		err = bench.ServeNetUDP(ctx, *addr)
	case "gnet":
		err = bench.ServeGnet(ctx, *addr)
	case "raw-xsk":
		err = bench.ServeRawXSK(ctx, bench.RawXSKConfig{Addr: *addr, Iface: *iface, Queue: *queue, Core: *core})
	case "zerohop":
		rest := fs.Args()
		if len(rest) == 0 || rest[0] != "serve" {
			return fs.usageError(os.Stderr, "--kind zerohop: want `-- serve ARGS…` after the flags")
		}
		stop() // serve handles the signals itself
		return serveProfiled(*cpuProfile, rest[1:])
	default:
		return fs.usageError(os.Stderr, "unknown --kind %q: want nethttp, netudp, gnet, raw-xsk or zerohop", *kind)
	}
	if err != nil {
		return fail(os.Stderr, "bench-server", err, nil)
	}
	return exitOK
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
	fs := newFlags("bench-client", "usage: zerohop bench-client --kind gwir|http|xsk|runtime-client --addr IP:PORT [--n N] …\n\nInternal to `zerohop bench`: drives one load point and prints its result.")
	var cfg bench.ClientConfig
	fs.StringVar(&cfg.Kind, "kind", bench.LoadGWIR, "gwir (kernel UDP), http, xsk or runtime-client")
	fs.StringVar(&cfg.Addr, "addr", "", "IP:PORT of the server")
	fs.IntVar(&cfg.Outstanding, "n", 1, "outstanding requests")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "warm-up before the measured window")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "measured window")
	fs.IntVar(&cfg.PayloadBytes, "payload", 64, "payload bytes per request")
	fs.DurationVar(&cfg.Timeout, "timeout", 500*time.Millisecond, "a request unanswered this long is an error")
	fs.Int64Var(&cfg.Count, "count", 0, "end the window after this many replies too (xsk, runtime-client; 0: no limit)")
	fs.StringVar(&cfg.Iface, "iface", "", "the client's interface (xsk)")
	fs.StringVar(&cfg.Src, "src", "", "the client's IP:PORT on --iface (xsk)")
	fs.StringVar(&cfg.DstMAC, "dst-mac", "", "the server's Ethernet address (xsk)")
	fs.IntVar(&cfg.Queues, "queues", 1, "queues of --iface to bind (xsk)")
	core := fs.Int("core", -1, "core to pin the engine's loop to (runtime-client; -1: the engine's default)")
	fs.StringVar(&cfg.Identity, "identity", "", "with --kind runtime-client: seal the calls with this identity directory")
	fs.StringVar(&cfg.Service, "service", "", "with --kind runtime-client: call by this service name (mesh.DialService over a static resolver of --addr)")
	if code, done := fs.parse(args, os.Stdout, os.Stderr); done {
		return code
	}
	if cfg.Outstanding < 1 || cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.PayloadBytes < 0 || cfg.Timeout <= 0 || cfg.Count < 0 || cfg.Queues < 1 {
		return fs.usageError(os.Stderr, "--n and --queues must be ≥ 1, --duration and --timeout positive, --warmup, --payload and --count ≥ 0")
	}
	if *core >= 0 {
		cfg.EngineCores = []int{*core}
	}
	sig := signalContext(context.Background())
	defer sig.stop()
	if err := bench.RunClient(sig, cfg, os.Stdout); err != nil {
		return fail(os.Stderr, "bench-client", err, nil)
	}
	return exitOK
}
