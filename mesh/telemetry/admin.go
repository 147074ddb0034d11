package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/runtime"
)

// AdminConfig configures an Admin endpoint.
type AdminConfig struct {
	// Listen is an extra listener, as --admin writes it: "host:port" (TCP)
	// or "unix:PATH" (see ParseEndpoint); "" for none. The TCP listener
	// serves anyone who can reach it: bind it to loopback or a management
	// network, as handlers mounted with Handle may change the server.
	Listen string
	// Socket is the abstract unix socket name the endpoint always listens
	// on; "" means SocketName(server address), "-" none.
	Socket string
	// Logger receives the endpoint's errors (default slog.Default()).
	Logger *slog.Logger
}

// Admin is the admin HTTP endpoint of one server, off the data path:
//
//	/metrics         Prometheus text (the Collector, Go and process metrics)
//	/stat            StatReport as JSON (what `zerohop stat` and `zerohop top` show)
//	/healthz         200 "serving", 503 "draining" once Shutdown began
//	/debug/pprof/    net/http/pprof
//	(Handle)         whatever the mesh mounts: the policy API
//
// Every handler reads counters through Stats-style snapshots of atomic
// counters and the XDP maps through map syscalls: no handler takes a lock
// an event loop takes.
type Admin struct {
	cfg    AdminConfig
	src    Sources
	reg    *prometheus.Registry
	mux    *http.ServeMux
	srv    *http.Server
	opened *attachedXDP // the maps Admin opened itself (closed by Close)
	log    *slog.Logger

	mu        sync.Mutex
	listeners []net.Listener
	closed    bool
	done      sync.WaitGroup
}

// NewAdmin makes the endpoint over src; nothing listens until Start.
// With src.XDP nil and src.Iface set, the steering program's maps are
// found through the interface (bpf.OpenAttached) at the first read.
func NewAdmin(cfg AdminConfig, src Sources) (*Admin, error) {
	a := &Admin{cfg: cfg, src: src, log: cfg.Logger, mux: http.NewServeMux()}
	if a.log == nil {
		a.log = slog.Default()
	}
	if cfg.Listen != "" {
		if _, err := ParseEndpoint(cfg.Listen); err != nil {
			return nil, err
		}
	}
	if a.src.XDP == nil && a.src.Iface != "" {
		a.opened = &attachedXDP{iface: a.src.Iface}
		a.src.XDP = a.opened
	}
	a.reg = prometheus.NewRegistry()
	if err := a.reg.Register(NewCollector(a.src)); err != nil {
		return nil, fmt.Errorf("telemetry: registering the zerohop collector: %w", err)
	}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{a.log}}))
	a.mux.HandleFunc("GET /stat", a.serveStat)
	a.mux.HandleFunc("GET /healthz", a.serveHealth)
	a.mux.HandleFunc("/debug/pprof/", pprof.Index)
	a.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	a.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	a.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	a.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	a.srv = &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// Serve makes the admin endpoint of srv (with tr's counters when tr is not
// nil, and the XDP maps of iface when iface is not empty) and starts it:
// the one call a server's main needs. Close it after srv's Shutdown.
func Serve(srv *runtime.Server, cfg AdminConfig, iface string, tr *Tracer) (*Admin, error) {
	src := Sources{Server: srv, Iface: iface}
	if tr != nil {
		src.Tracer = tr
	}
	a, err := NewAdmin(cfg, src)
	if err != nil {
		return nil, err
	}
	if err := a.Start(); err != nil {
		return nil, err
	}
	return a, nil
}

// Registry is the registry /metrics serves, for the application's own
// metrics.
func (a *Admin) Registry() *prometheus.Registry { return a.reg }

// Handle mounts h at pattern (http.ServeMux syntax): the place for the
// policy API and other mesh endpoints. Patterns may be added while
// serving.
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// ServeHTTP serves the endpoint's routes (for embedding in another mux).
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Start opens the listeners and serves them. It fails when one cannot be
// opened (an abstract name in use means another server of the same
// address is in this network namespace).
func (a *Admin) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("telemetry: Admin.Start after Close")
	}
	if len(a.listeners) > 0 {
		return errors.New("telemetry: Admin.Start called twice")
	}
	var lns []net.Listener
	fail := func(err error) error {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	if name := a.socketName(); name != "" {
		l, err := net.Listen("unix", name)
		if err != nil {
			return fail(fmt.Errorf("telemetry: admin socket %s: %w (is another server with this address running in this network namespace?)", name, err))
		}
		lns = append(lns, &peerCredListener{Listener: l, uid: uint32(os.Geteuid()), rejected: func(uid uint32) {
			a.log.Warn("zerohop admin: refused a connection from another user", "uid", uid, "socket", name)
		}})
	}
	if a.cfg.Listen != "" {
		ep, _ := ParseEndpoint(a.cfg.Listen)
		l, err := net.Listen(ep.Network, ep.Address)
		if err != nil {
			return fail(fmt.Errorf("telemetry: --admin %s: %w", a.cfg.Listen, err))
		}
		lns = append(lns, l)
	}
	a.listeners = lns
	for _, l := range lns {
		a.done.Add(1)
		go func() {
			defer a.done.Done()
			if err := a.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("zerohop admin: serving stopped", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	return nil
}

func (a *Admin) socketName() string {
	switch {
	case a.cfg.Socket == "-":
		return ""
	case a.cfg.Socket != "":
		return a.cfg.Socket
	case a.src.Server != nil:
		return SocketName(a.src.Server.Addr().String())
	}
	return SocketName(fmt.Sprintf("pid%d", os.Getpid()))
}

// Addrs returns the addresses served (the abstract socket first), once
// started.
func (a *Admin) Addrs() []net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]net.Addr, len(a.listeners))
	for i, l := range a.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Close stops serving (requests in progress get up to a second), and
// releases the listeners and the maps it opened.
func (a *Admin) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	if err != nil {
		err = a.srv.Close()
	}
	a.done.Wait()
	if a.opened != nil {
		a.opened.Close()
	}
	return err
}

func (a *Admin) serveStat(w http.ResponseWriter, _ *http.Request) {
	rep := Snapshot(a.src)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}

func (a *Admin) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if a.src.Server != nil && a.src.Server.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "draining")
		return
	}
	fmt.Fprintln(w, "serving")
}

type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Warn("zerohop admin: /metrics", "err", fmt.Sprint(v...)) }

// attachedXDP reads the maps of the program attached to an interface,
// opening them by id at the first read and again after a failed read (the
// program may have been detached and attached anew). Its lock is the
// admin endpoint's own; the loops never see it.
type attachedXDP struct {
	iface string
	mu    sync.Mutex
	maps  *bpf.Maps
}

func (x *attachedXDP) get() (*bpf.Maps, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.maps == nil {
		m, err := bpf.OpenAttached(x.iface)
		if err != nil {
			return nil, err
		}
		x.maps = m
	}
	return x.maps, nil
}

func (x *attachedXDP) failed(m *bpf.Maps) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.maps == m {
		x.maps.Close()
		x.maps = nil
	}
}

// Close releases the maps.
func (x *attachedXDP) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.maps == nil {
		return nil
	}
	err := x.maps.Close()
	x.maps = nil
	return err
}

func withMaps[T any](x *attachedXDP, read func(*bpf.Maps) (T, error)) (T, error) {
	m, err := x.get()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := read(m)
	if err != nil {
		x.failed(m)
	}
	return v, err
}

func (x *attachedXDP) Counters() (bpf.Counters, error)  { return withMaps(x, (*bpf.Maps).Counters) }
func (x *attachedXDP) ACLRules() ([]bpf.ACLRule, error) { return withMaps(x, (*bpf.Maps).ACLRules) }
func (x *attachedXDP) Services() ([]bpf.Service, error) { return withMaps(x, (*bpf.Maps).Services) }
func (x *attachedXDP) Slots() ([]bpf.SlotInfo, error)   { return withMaps(x, (*bpf.Maps).Slots) }
