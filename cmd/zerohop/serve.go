package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	iface := fs.String("iface", "", "interface for the XSK backend (default: the one holding --addr); one that does not exist is an error")
	// The node data path's flags (issue 9): queues, TCP, sharing.
	queues := fs.String("queues", "", "comma-separated RX queues to serve through AF_XDP (default: every queue no other zerohop server holds;\nthe kernel path answers what arrives on the others); on --backend uring, one socket and loop per entry")
	tcp := fs.Bool("tcp", false, "also serve the TCP stream transport on the same address (both backends)")
	reusePort := fs.Bool("reuse-port", false, "share the address with other zerohop servers given --reuse-port too (default: \"address in use\")")
	cores := fs.String("cores", "", "comma-separated cores for the --queues' loops (default: the CPU the queue's IRQ is affine to, else queue mod NumCPU)")
	backend := fs.String("backend", "auto", "auto, xsk or uring")
	busyPoll := fs.Duration("busy-poll", runtime.DefaultBusyPoll, "how long a loop spins after its last packet before sleeping")
	pin := fs.Bool("pin-maps", false, "pin the XDP maps under /sys/fs/bpf/zerohop/<iface> while serving")
	statsEvery := fs.Duration("stats", 0, "log counters at this interval (0: only at exit)")
	fs.Usage = func() {
		fmt.Fprintln(logOut, "usage: zerohop serve --addr IP:PORT [--iface IFACE] [--queues 0,1] [--cores 0,1] [--backend auto|xsk|uring] [--tcp] [--reuse-port]")
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
	log := slog.New(slog.NewTextHandler(logOut, nil))
	opts := []runtime.Option{runtime.WithBackend(b), runtime.WithBusyPoll(*busyPoll), runtime.WithLogger(log)}
	// The node data path's flags.
	if *queues != "" {
		qs, err := parseInts(*queues)
		if err != nil {
			fmt.Fprintln(logOut, "zerohop serve: --queues:", err)
			return 2
		}
		opts = append(opts, runtime.WithQueues(qs...))
	}
	if *tcp {
		opts = append(opts, runtime.WithTCP())
	}
	if *reusePort {
		opts = append(opts, runtime.WithReusePort())
	}
	if *cores != "" && *queues == "" {
		fmt.Fprintln(logOut, "zerohop serve: --cores needs --queues (one core per queue)")
		return 2
	}
	if *iface != "" {
		if _, err := net.InterfaceByName(*iface); err != nil {
			fmt.Fprintf(logOut, "zerohop serve: --iface %s: no such interface in this network namespace (%v); run inside the interface's namespace (ip netns exec) or name another\n", *iface, err)
			return 2
		}
	}
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
	srv, err := runtime.Listen("udp", *addr, opts...)
	if err != nil {
		fmt.Fprintln(logOut, "zerohop serve:", flagNames.Replace(err.Error()))
		return 1
	}
	echo.Register(srv)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(); err != nil {
		fmt.Fprintln(logOut, "zerohop serve:", err)
		return 1
	}
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
			"served_xsk", l.Served["xsk"], "served_udp", l.Served["udp"], "served_tcp", l.Served["tcp"],
			"dropped", l.DroppedTotal(), "bad_frame", l.BadFrame, "partial_checksum", l.PartialChecksum,
			"p50", l.Latency.Quantile(0.5), "p99", l.Latency.Quantile(0.99))
	}
	for _, q := range st.Queues {
		log.Info("xsk queue", "queue", q.Queue, "irq", q.IRQ, "core", q.Core, "rx", q.RX, "tx", q.TX, "fill_ring_empty", q.FillRingEmpty)
	}
}

// flagNames turns the runtime's option names in an error into the flags
// that set them.
var flagNames = strings.NewReplacer(
	"WithBackend(BackendXSK)", "--backend xsk",
	"WithBackend(BackendUring)", "--backend uring",
	"WithQueues", "--queues",
	"WithCores", "--cores",
	"WithInterface", "--iface",
	"WithReusePort", "--reuse-port",
	"WithTCP", "--tcp",
	"WithPinnedMaps", "--pin-maps",
)

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
