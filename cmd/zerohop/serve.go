package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/runtime"
)

func init() {
	register(command{name: "serve", summary: "serve the demo Echo service (zerohop.Echo/Echo, /Sum)", run: runServe})
}

func runServe(args []string) int {
	return serve(context.Background(), os.Stdout, os.Stderr, args, nil)
}

const serveUsage = `usage: zerohop serve --addr IP:PORT [--iface IFACE] [--queues 0,1] [--cores 0,1] [--backend auto|xsk|uring] [--tcp] [--reuse-port]
                     [--service NAME (--etcd ENDPOINTS | --node-table) [--advertise IP:PORT] [--weight N] [--zone Z]] [--drain-delay D]
                     [--policy FILE [--policy-watch D]] [--shed]
                     [--admin HOST:PORT|unix:PATH] [--otlp URL [--trace-ratio F]]
                     [--identity DIR [--require-sealed] [--allow SPIFFE_GLOB,...] [--handshake-port N]]

Serves the demo Echo service (zerohop.Echo/Echo, zerohop.Echo/Sum) until
SIGINT, SIGTERM, SIGHUP or SIGPIPE, then drains and releases every socket,
ring and XDP attachment. A second SIGINT, SIGTERM or SIGHUP during the
drain (Ctrl-C again) cuts it short: what is held is still released, and
the exit status is 128+that signal. Logs go to stderr. Its admin endpoint (/metrics,
/stat, /healthz, /debug/pprof) always listens on an abstract socket that
zerohop stat and zerohop top find; --admin adds a listener.`

// serveFlags maps the runtime's option names in its errors to serve's flags.
var serveFlags = map[string]string{
	"WithInterface": "--iface", "WithQueues": "--queues", "WithCores": "--cores",
	"WithBackend": "--backend", "WithBusyPoll": "--busy-poll", "WithPinnedMaps": "--pin-maps",
	"WithTCP": "--tcp", "WithReusePort": "--reuse-port",
}

// serve runs the demo service until a signal or ctx ends. started, when
// not nil, receives the server once it serves (for tests).
func serve(ctx context.Context, stdout, logOut io.Writer, args []string, started chan<- *runtime.Server) int {
	fs := newFlags("serve", serveUsage)
	addr := fs.String("addr", "", "IP:PORT to serve on (required)")
	iface := fs.String("iface", "", "interface for the XSK backend (default: the one holding --addr); one that does not exist is an error")
	// The node data path's flags: queues, TCP, sharing an address.
	queues := fs.String("queues", "", "comma-separated RX queues to serve through AF_XDP (default: every queue no other zerohop server holds;\nthe kernel path answers what arrives on the others); on --backend uring, one socket and loop per entry")
	tcp := fs.Bool("tcp", false, "also serve the TCP stream transport on the same address (both backends)")
	reusePort := fs.Bool("reuse-port", false, "share the address with other zerohop servers given --reuse-port too (default: \"address in use\")")
	cores := fs.String("cores", "", "comma-separated cores for the --queues' loops (default: the CPU the queue's IRQ is affine to, else queue mod NumCPU)")
	backend := fs.String("backend", "auto", "auto, xsk or uring")
	busyPoll := fs.Duration("busy-poll", runtime.DefaultBusyPoll, "how long a loop spins after its last packet before sleeping (0: always sleep)")
	pin := fs.Bool("pin-maps", false, "pin the XDP maps under /sys/fs/bpf/zerohop/<iface> while serving")
	statsEvery := fs.Duration("stats", 0, "log counters at this interval (0: only at exit)")
	pf := addPolicyFlags(fs.FlagSet)     // --policy, --policy-watch, --shed, --policy-admin (servepolicy.go)
	tel := addTelemetryFlags(fs.FlagSet) // --admin, --otlp, --trace-ratio (telemetry.go)
	// Peer identity and sealed frames: --identity, --require-sealed, --allow, --handshake-port (sealing.go).
	idf := addIdentityFlags(fs.FlagSet, true)
	mf := addMeshFlags(fs.FlagSet) // --service, --etcd, --node-table, --advertise, --drain-delay, … (servemesh.go)
	if code, done := fs.parse(args, stdout, logOut); done {
		return code
	}
	if fs.NArg() > 0 {
		return fs.usageError(logOut, "unexpected argument %q: serve takes only flags", fs.Arg(0))
	}
	if *addr == "" {
		return fs.usageError(logOut, "--addr is required: give the IP:PORT to serve on, e.g. --addr 127.0.0.1:7000")
	}
	b, err := runtime.ParseBackend(*backend)
	if err != nil {
		return fs.usageError(logOut, "--backend %q: want auto, xsk or uring", *backend)
	}
	// The node data path's flags.
	var qs []int
	if *queues != "" {
		if qs, err = parseInts(*queues); err != nil || anyNegative(qs) {
			return fs.usageError(logOut, "--queues %q: want comma-separated queue numbers ≥ 0, e.g. --queues 0,1", *queues)
		}
	}
	if *iface != "" {
		if _, err := net.InterfaceByName(*iface); err != nil {
			return fs.usageError(logOut, "--iface %s: no such interface in this network namespace (%v): run inside the interface's namespace (ip netns exec) or name another", *iface, err)
		}
	}
	if *busyPoll < 0 {
		return fs.usageError(logOut, "--busy-poll %v is negative: give 0 to always sleep, or a window such as 1ms", *busyPoll)
	}
	if *statsEvery < 0 {
		return fs.usageError(logOut, "--stats %v is negative: give 0 to log counters only at exit, or an interval such as 10s", *statsEvery)
	}
	log := slog.New(slog.NewTextHandler(logOut, nil))
	opts := []runtime.Option{runtime.WithBackend(b), runtime.WithBusyPoll(*busyPoll), runtime.WithLogger(log)}
	if len(qs) > 0 {
		opts = append(opts, runtime.WithQueues(qs...))
	}
	if *tcp {
		opts = append(opts, runtime.WithTCP())
	}
	if *reusePort {
		opts = append(opts, runtime.WithReusePort())
	}
	if *cores != "" {
		cs, err := parseInts(*cores)
		if err != nil || anyNegative(cs) {
			return fs.usageError(logOut, "--cores %q: want comma-separated CPU numbers ≥ 0, one per queue", *cores)
		}
		if len(cs) != len(qs) {
			return fs.usageError(logOut, "--cores lists %d cores for %d queues: give one core per --queues entry", len(cs), len(qs))
		}
		opts = append(opts, runtime.WithCores(cs...))
	}
	if *iface != "" {
		opts = append(opts, runtime.WithInterface(*iface))
	}
	if *pin {
		opts = append(opts, runtime.WithPinnedMaps())
	}
	if err := tel.check(); err != nil {
		return fs.usageError(logOut, "%v", err)
	}
	if err := idf.check(*tcp); err != nil {
		return fs.usageError(logOut, "%v", err)
	}
	// Being found and leaving (servemesh.go): registration in etcd and the
	// node table, the drain delay.
	meshOpts, meshDone, usage, err := mf.setup(*addr, log)
	if usage != nil {
		return fs.usageError(logOut, "%v", usage)
	}
	if err != nil {
		return fail(logOut, "serve", err, serveFlags)
	}
	defer meshDone()
	opts = append(opts, meshOpts...)
	// Signals first: from here on, a signal ends the command cleanly.
	sig := signalContext(ctx)
	defer sig.stop()
	pol, polOpts, err := pf.setup(len(qs), log)
	if err != nil {
		return fs.usageError(logOut, "%v", err)
	}
	opts = append(opts, polOpts...)
	sealing, sealOpts, err := idf.setup(log)
	if err != nil {
		return fail(logOut, "serve", err, serveFlags)
	}
	opts = append(opts, sealOpts...)
	if opts, err = tel.serverOptions(opts); err != nil {
		return fail(logOut, "serve", err, serveFlags)
	}
	srv, err := runtime.Listen("udp", *addr, opts...)
	if err != nil {
		tel.closeTracer()
		return fail(logOut, "serve", err, serveFlags)
	}
	echo.Register(srv)
	if err := pol.load(); err != nil {
		srv.Shutdown(context.Background())
		return fs.usageError(logOut, "%v", err)
	}
	if err := srv.Start(); err != nil {
		code := fail(logOut, "serve", err, serveFlags)
		srv.Shutdown(context.Background())
		tel.closeTracer()
		return code
	}
	if err := pol.start(srv, *iface); err != nil {
		code := fail(logOut, "serve", err, serveFlags)
		srv.Shutdown(context.Background())
		tel.closeTracer()
		return code
	}
	defer pol.stop()
	if err := sealing.start(srv); err != nil {
		code := fail(logOut, "serve", err, serveFlags)
		srv.Shutdown(context.Background())
		tel.closeTracer()
		return code
	}
	defer sealing.stop() // after Shutdown: sealed calls in flight still get their replies
	tel.sessions = sealing.sessions()
	stopTelemetry, err := tel.start(srv, *iface, pol.handler(), log)
	if err != nil {
		code := fail(logOut, "serve", err, serveFlags)
		srv.Shutdown(context.Background())
		return code
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
		case <-sig.Done():
			break wait
		}
	}
	log.Info("shutting down: draining; press Ctrl-C again to stop now", "signal", signalName(sig.received()), "drain_delay", mf.drainDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second+mf.drainDelay)
	defer cancel()
	// A second signal ends the drain: Shutdown's context is cancelled, so
	// it stops waiting (drain delay, in-flight calls) and goes straight
	// to releasing the sockets, rings and XDP attachment; the deferred
	// cleanup above runs as on a clean stop.
	var forced atomic.Bool
	shutDown, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-sig.again:
			forced.Store(true)
			cancel()
		case <-shutDown:
		}
	}()
	err = srv.Shutdown(shutdownCtx)
	close(shutDown)
	<-watched
	logStats(log, srv)
	if forced.Load() {
		abandoned := srv.Stats().Abandoned
		fmt.Fprintf(logOut, "zerohop serve: stopped at once by a second %s: the drain was cut short (%d queued calls never ran, calls still running get no reply); sockets and XDP attachment released\n",
			signalName(sig.repeated()), abandoned)
		return 128 + int(sig.repeated().(syscall.Signal))
	}
	if err != nil {
		return fail(logOut, "serve", fmt.Errorf("shutdown: %w", err), serveFlags)
	}
	return exitOK // a signal is how a server is meant to stop
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

func anyNegative(xs []int) bool {
	for _, x := range xs {
		if x < 0 {
			return true
		}
	}
	return false
}
