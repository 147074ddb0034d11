package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/runtime"
)

func init() {
	register(command{name: "serve", summary: "serve the demo Echo service (zerohop.Echo/Echo, /Sum)", run: runServe})
}

func runServe(args []string) int { return serve(context.Background(), os.Stderr, args, nil) }

// serve runs the demo service until SIGINT/SIGTERM or ctx ends. started,
// when not nil, receives the server once it serves (for tests).
func serve(ctx context.Context, logOut io.Writer, args []string, started chan<- *runtime.Server) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(logOut)
	addr := fs.String("addr", "", "IP:PORT to serve on (required)")
	iface := fs.String("iface", "", "interface for the XSK backend (default: the one holding --addr)")
	queues := fs.String("queues", "0", "comma-separated RX queues, one event loop each")
	cores := fs.String("cores", "", "comma-separated cores for the queues' loops (default: queue mod NumCPU)")
	backend := fs.String("backend", "auto", "auto, xsk or uring")
	busyPoll := fs.Duration("busy-poll", runtime.DefaultBusyPoll, "how long a loop spins after its last packet before sleeping")
	pin := fs.Bool("pin-maps", false, "pin the XDP maps under /sys/fs/bpf/zerohop/<iface> while serving")
	statsEvery := fs.Duration("stats", 0, "log counters at this interval (0: only at exit)")
	tel := addTelemetryFlags(fs) // --admin, --otlp, --trace-ratio (telemetry.go)
	fs.Usage = func() {
		fmt.Fprintln(logOut, "usage: zerohop serve --addr IP:PORT [--iface IFACE] [--queues 0,1] [--cores 0,1] [--backend auto|xsk|uring]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" {
		fmt.Fprintln(logOut, "zerohop serve: --addr is required")
		fs.Usage()
		return 2
	}
	b, err := runtime.ParseBackend(*backend)
	if err != nil {
		fmt.Fprintln(logOut, "zerohop serve:", err)
		return 2
	}
	qs, err := parseInts(*queues)
	if err != nil {
		fmt.Fprintln(logOut, "zerohop serve: --queues:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))
	opts := []runtime.Option{runtime.WithQueues(qs...), runtime.WithBackend(b), runtime.WithBusyPoll(*busyPoll), runtime.WithLogger(log)}
	if *cores != "" {
		cs, err := parseInts(*cores)
		if err != nil {
			fmt.Fprintln(logOut, "zerohop serve: --cores:", err)
			return 2
		}
		opts = append(opts, runtime.WithCores(cs...))
	}
	if *iface != "" {
		opts = append(opts, runtime.WithInterface(*iface))
	}
	if *pin {
		opts = append(opts, runtime.WithPinnedMaps())
	}
	if opts, err = tel.serverOptions(opts); err != nil {
		fmt.Fprintln(logOut, "zerohop serve:", err)
		return 2
	}
	srv, err := runtime.Listen("udp", *addr, opts...)
	if err != nil {
		fmt.Fprintln(logOut, "zerohop serve:", err)
		return 1
	}
	echo.Register(srv)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(); err != nil {
		fmt.Fprintln(logOut, "zerohop serve:", err)
		return 1
	}
	stopTelemetry, err := tel.start(srv, *iface, log)
	if err != nil {
		fmt.Fprintln(logOut, "zerohop serve:", err)
		srv.Shutdown(context.Background())
		return 1
	}
	defer stopTelemetry() // after Shutdown: /healthz says draining meanwhile
	if started != nil {
		started <- srv
	}
	var tick <-chan time.Time
	if *statsEvery > 0 {
		t := time.NewTicker(*statsEvery)
		defer t.Stop()
		tick = t.C
	}
wait:
	for {
		select {
		case <-tick:
			logStats(log, srv)
		case <-ctx.Done():
			break wait
		}
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	logStats(log, srv)
	if err != nil {
		fmt.Fprintln(logOut, "zerohop serve: shutdown:", err)
		return 1
	}
	return 0
}

func logStats(log *slog.Logger, srv *runtime.Server) {
	st := srv.Stats()
	for _, l := range st.Loops {
		log.Info("loop", "queue", l.Queue, "core", l.Core, "rx", l.RX, "tx", l.TX, "requests", l.Requests,
			"dropped", l.DroppedTotal(), "bad_frame", l.BadFrame, "p50", l.Latency.Quantile(0.5), "p99", l.Latency.Quantile(0.99))
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
