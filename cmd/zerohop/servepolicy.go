package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/shed"
	"github.com/zerohop/zerohop/runtime"
)

// policyFlags are serve's flags for the mesh policies, kept together.
type policyFlags struct {
	file  string
	watch time.Duration
	shed  bool
	admin string
}

func addPolicyFlags(fs *flag.FlagSet) *policyFlags {
	f := &policyFlags{}
	fs.StringVar(&f.file, "policy", "", "policy file: authorization rules and rate limits (YAML or JSON, see docs/policy.md), watched and reloaded")
	fs.DurationVar(&f.watch, "policy-watch", policy.DefaultWatchInterval, "how often the --policy file is checked for changes")
	fs.BoolVar(&f.shed, "shed", false, "refuse blocking calls OVERLOADED once the server is past its capacity (adaptive load shedding)")
	fs.StringVar(&f.admin, "policy-admin", "", "serve the policy admin API on this HTTP address (e.g. 127.0.0.1:9901), for `zerohop acl --admin`")
	return f
}

func (f *policyFlags) enabled() bool { return f.file != "" || f.shed || f.admin != "" }

// servePolicy is the policy side of a running serve.
type servePolicy struct {
	flags   *policyFlags
	log     *slog.Logger
	pol     *policy.Server
	cpu     *shed.CPUSampler
	maps    *bpf.Maps
	admin   *http.Server
	adminLn net.Listener
	cancel  context.CancelFunc
	done    []chan struct{}
}

// setup builds the policies for a server of at most loops event loops,
// returning the runtime options that install them (nil when no policy
// flag is set).
func (f *policyFlags) setup(loops int, log *slog.Logger) (*servePolicy, []runtime.Option, error) {
	if !f.enabled() {
		return nil, nil, nil
	}
	p := &servePolicy{flags: f, log: log}
	cfg := policy.ServerConfig{Loops: loops, Logger: log}
	if f.shed {
		p.cpu = shed.NewCPUSampler(nil)
		cfg.Shed = &shed.Config{CPU: p.cpu.Usage}
	}
	pol, err := policy.NewServer(cfg)
	if err != nil {
		return nil, nil, err
	}
	p.pol = pol
	return p, pol.Options(), nil
}

// load reads the policy file once the methods are registered (so that
// globs matching none are reported); a file that does not load stops
// serve before it serves.
func (p *servePolicy) load() error {
	if p == nil || p.flags.file == "" {
		return nil
	}
	rep, err := p.pol.LoadFile(p.flags.file)
	if err != nil {
		return fmt.Errorf("--policy: %w", err)
	}
	for _, w := range rep.Warnings {
		p.log.Warn("policy: " + w)
	}
	p.log.Info("policy loaded", "file", p.flags.file, "policy", rep.String())
	return nil
}

// start runs what needs the serving server: the XDP part of the policy on
// the AF_XDP backend, the file watch, the CPU sampler, the admin API.
func (p *servePolicy) start(srv *runtime.Server, iface string) error {
	if p == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	goDone := func(fn func()) {
		d := make(chan struct{})
		p.done = append(p.done, d)
		go func() { defer close(d); fn() }()
	}
	if srv.Backend() == runtime.BackendXSK {
		if iface == "" {
			iface = interfaceHolding(srv.Addr().Addr())
		}
		maps, err := bpf.OpenAttached(iface)
		if err != nil {
			p.log.Warn("policy: the XDP ACL is not reachable; the middleware enforces every rule", "iface", iface, "err", err)
		} else {
			p.maps = maps
			res := p.pol.AttachACL(maps, srv.Addr().Port())
			p.log.Info("policy: "+res.String(), "iface", iface)
		}
	}
	if p.cpu != nil {
		goDone(func() { p.cpu.Run(ctx, 0) })
	}
	if p.flags.file != "" {
		goDone(func() {
			p.pol.Watch(ctx, p.flags.file, p.flags.watch, func(ev policy.WatchEvent) {
				if ev.Err != nil {
					p.log.Error("policy: file refused; the policy in force stays", "err", ev.Err)
					return
				}
				p.log.Info("policy reloaded", "policy", ev.Report.String())
			})
		})
	}
	if p.flags.admin != "" {
		ln, err := net.Listen("tcp", p.flags.admin)
		if err != nil {
			p.stop()
			return fmt.Errorf("--policy-admin %s: %w", p.flags.admin, err)
		}
		p.adminLn = ln
		// At / as before, and at /policy/ as on the admin endpoint, where
		// zerohop acl asks.
		mux := http.NewServeMux()
		mux.Handle("/", p.pol.Handler())
		mux.Handle("/policy/", p.handler())
		p.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		goDone(func() {
			if err := p.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.log.Error("policy admin API stopped", "err", err)
			}
		})
		p.log.Info("policy admin API", "addr", ln.Addr().String())
	}
	return nil
}

// handler is the policy API for the admin endpoint's /policy/ path (nil
// without a policy).
func (p *servePolicy) handler() http.Handler {
	if p == nil {
		return nil
	}
	return http.StripPrefix("/policy", p.pol.Handler())
}

// stop ends the watch and the admin API and leaves the port's ACL entries
// to nobody.
func (p *servePolicy) stop() {
	if p == nil {
		return
	}
	if p.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p.admin.Shutdown(ctx)
		cancel()
	}
	if p.cancel != nil {
		p.cancel()
	}
	for _, d := range p.done {
		<-d
	}
	if p.maps != nil {
		if res := p.pol.DetachACL(); res.Err != nil {
			p.log.Warn("policy: removing the port's XDP ACL entries", "err", res.Err)
		}
		p.maps.Close()
	}
}

// interfaceHolding names the interface that holds addr, "" when none does.
func interfaceHolding(addr netip.Addr) string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr.Unmap() {
					return ifc.Name
				}
			}
		}
	}
	return ""
}
