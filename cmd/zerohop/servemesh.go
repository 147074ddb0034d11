package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/mesh/discovery/etcd"
	"github.com/zerohop/zerohop/mesh/discovery/node"
	"github.com/zerohop/zerohop/runtime"
)

// meshFlags are serve's flags for being found: registration in etcd and
// in the node table, what is announced, and how long to drain.
type meshFlags struct {
	service    string
	etcd       string
	etcdTTL    time.Duration
	etcdPrefix string
	nodeTable  bool
	advertise  string
	weight     uint
	zone       string
	drainDelay time.Duration
}

func addMeshFlags(fs *flag.FlagSet) *meshFlags {
	f := &meshFlags{}
	fs.StringVar(&f.service, "service", "", "register as an endpoint of this service (with --etcd and/or --node-table), e.g. zerohop.Echo")
	fs.StringVar(&f.etcd, "etcd", "", "comma-separated etcd endpoints to register in (e.g. http://10.0.0.10:2379), with --service")
	fs.DurationVar(&f.etcdTTL, "etcd-ttl", etcd.DefaultTTL, "lease TTL of the etcd registration (whole seconds)")
	fs.StringVar(&f.etcdPrefix, "etcd-prefix", etcd.DefaultPrefix, "etcd key prefix of services")
	fs.BoolVar(&f.nodeTable, "node-table", false, "register in the node's BPF service table, for clients on this node (with --service)")
	fs.StringVar(&f.advertise, "advertise", "", "IP:PORT to announce (default --addr; required when --addr's IP is 0.0.0.0 or ::)")
	fs.UintVar(&f.weight, "weight", 0, "weight to announce (0 counts as 1)")
	fs.StringVar(&f.zone, "zone", "", "zone to announce")
	fs.DurationVar(&f.drainDelay, "drain-delay", 0, "once a signal starts the shutdown and the registration is withdrawn, keep the port open this long answering\n"+
		"PING draining and new calls OVERLOADED, so that clients learn from discovery and health probes and move away\n"+
		"before it closes; calls in flight then get up to 5s more. Also without --service. Ctrl-C again cuts it short\n"+
		"(default 0: close as soon as the calls in flight are done)")
	return f
}

// setup checks the flags (a usage error when wrong) and returns the
// runtime options that register the server, and a function to call
// after Shutdown. Registration in etcd happens in the background, so the
// server serves while etcd is unreachable (the registry retries with
// backoff, logging each failure at WARN).
func (f *meshFlags) setup(addr string, log *slog.Logger) (opts []runtime.Option, done func(), usage, err error) {
	done = func() {}
	if f.drainDelay < 0 {
		return nil, done, fmt.Errorf("--drain-delay %v is negative: give 0 to close at once, or e.g. 1s", f.drainDelay), nil
	}
	if f.drainDelay > 0 {
		opts = append(opts, runtime.WithDrainDelay(f.drainDelay))
	}
	registering := f.etcd != "" || f.nodeTable
	switch {
	case !registering && f.service != "":
		return nil, done, errors.New("--service needs --etcd ENDPOINTS or --node-table to register in"), nil
	case !registering:
		return opts, done, nil, nil
	case f.service == "":
		return nil, done, errors.New("--service is required with --etcd and --node-table: give the service's name, e.g. --service zerohop.Echo"), nil
	case f.weight > 1<<32-1:
		return nil, done, fmt.Errorf("--weight %d: at most %d", f.weight, uint32(1<<32-1)), nil
	}
	if err := discovery.ValidService(f.service); err != nil {
		return nil, done, fmt.Errorf("--service: %v", err), nil
	}
	ep, uerr := f.endpoint(addr)
	if uerr != nil {
		return nil, done, uerr, nil
	}
	reg := &serveRegistry{ep: ep, log: log}
	if f.nodeTable {
		reg.regs = append(reg.regs, node.NewRegistry(node.WithLogger(log)))
	}
	if f.etcd != "" {
		cfg := etcd.ClientConfig(strings.Split(f.etcd, ",")...)
		cfg.Logger = zap.NewNop()
		cli, err := clientv3.New(cfg)
		if err != nil {
			return nil, done, nil, fmt.Errorf("--etcd %s: %w", f.etcd, err)
		}
		r, err := etcd.NewRegistry(cli, etcd.WithTTL(f.etcdTTL), etcd.WithPrefix(f.etcdPrefix), etcd.WithLogger(log))
		if err != nil {
			cli.Close()
			return nil, done, errors.New(withFlagNames(err.Error(), map[string]string{"WithTTL": "--etcd-ttl", "WithPrefix": "--etcd-prefix"})), nil
		}
		reg.background = r
		done = func() { cli.Close() }
	}
	return append(opts, runtime.WithRegistry(reg, f.service)), done, nil, nil
}

// endpoint is what the server announces.
func (f *meshFlags) endpoint(addr string) (runtime.Endpoint, error) {
	text, flagName := addr, "--addr"
	if f.advertise != "" {
		text, flagName = f.advertise, "--advertise"
	}
	ap, err := netip.ParseAddrPort(text)
	if err != nil {
		return runtime.Endpoint{}, fmt.Errorf("%s %q: registering needs an IP:PORT (%v)", flagName, text, err)
	}
	if ap.Addr().IsUnspecified() || ap.Port() == 0 {
		return runtime.Endpoint{}, fmt.Errorf("%s %v: clients cannot call that: give --advertise IP:PORT with the address they reach", flagName, ap)
	}
	return runtime.Endpoint{Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), Weight: uint32(f.weight), Zone: f.zone}, nil
}

// serveRegistry registers the server in every registry of serve's flags:
// the node table at once (its failure stops serve), etcd in the
// background.
type serveRegistry struct {
	ep         runtime.Endpoint
	regs       []runtime.Registry
	background runtime.Registry
	log        *slog.Logger
}

func (r *serveRegistry) Register(ctx context.Context, service string, _ runtime.Endpoint) (runtime.Registration, error) {
	g := &serveRegistration{}
	for _, reg := range r.regs {
		one, err := reg.Register(ctx, service, r.ep)
		if err != nil {
			g.Deregister(context.Background())
			return nil, err
		}
		g.done = append(g.done, one)
	}
	if r.background != nil {
		bctx, cancel := context.WithCancel(context.Background())
		g.cancel, g.wait = cancel, make(chan struct{})
		go func() {
			defer close(g.wait)
			one, err := r.background.Register(bctx, service, r.ep)
			if err != nil {
				if bctx.Err() == nil {
					r.log.Warn("registration failed", "service", service, "err", err)
				}
				return
			}
			g.mu.Lock()
			g.done = append(g.done, one)
			g.mu.Unlock()
		}()
	}
	return g, nil
}

type serveRegistration struct {
	mu     sync.Mutex
	done   []runtime.Registration
	cancel context.CancelFunc
	wait   chan struct{}
}

func (g *serveRegistration) Deregister(ctx context.Context) error {
	if g.cancel != nil {
		g.cancel() // a registration still retrying gives up
		<-g.wait
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	for _, one := range g.done {
		errs = append(errs, one.Deregister(ctx))
	}
	g.done = nil
	return errors.Join(errs...)
}
