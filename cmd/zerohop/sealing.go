package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/telemetry"
	"github.com/zerohop/zerohop/runtime"
)

// identityFlags are the flags of peer identity and sealed frames, kept
// together: serve's (all four) and call's (--identity, --allow,
// --handshake-port).
type identityFlags struct {
	dir           string
	requireSealed bool
	allow         string
	handshakePort uint
}

func addIdentityFlags(fs *flag.FlagSet, server bool) *identityFlags {
	f := &identityFlags{}
	if server {
		fs.StringVar(&f.dir, "identity", "", "identity directory (cert.pem, key.pem, bundle.pem: an X.509-SVID, its key and its trust domain's CAs):\n"+
			"take identity handshakes and seal the frames of callers that made one (docs/identity.md); reloaded when the files change")
		fs.BoolVar(&f.requireSealed, "require-sealed", false, "with --identity: answer unsealed requests DENIED before any handler (default: serve them, counted, to migrate)")
		fs.StringVar(&f.allow, "allow", "", "with --identity: comma-separated SPIFFE ID patterns of the callers that may make a handshake\n"+
			"(default: every workload of the SVID's trust domain), e.g. spiffe://prod.example/ns/shop/sa/*")
		fs.UintVar(&f.handshakePort, "handshake-port", 0, "with --identity: TCP port of the handshake listener (default: the --addr port; another one with --tcp)")
		return f
	}
	fs.StringVar(&f.dir, "identity", "", "identity directory (cert.pem, key.pem, bundle.pem): make a handshake with the server and seal the call")
	fs.StringVar(&f.allow, "allow", "", "with --identity: comma-separated SPIFFE ID patterns of the servers to accept (default: the SVID's trust domain)")
	fs.UintVar(&f.handshakePort, "handshake-port", 0, "with --identity: the server's handshake port (default: the --addr port)")
	return f
}

// check validates the flags; its errors are usage errors naming the flag.
// tcp says whether serve also serves the TCP transport on its port.
func (f *identityFlags) check(tcp bool) error {
	if f.dir == "" {
		for _, o := range []struct {
			set  bool
			name string
		}{{f.requireSealed, "--require-sealed"}, {f.allow != "", "--allow"}, {f.handshakePort != 0, "--handshake-port"}} {
			if o.set {
				return fmt.Errorf("%s needs --identity DIR (the workload's SVID, key and trust bundle)", o.name)
			}
		}
		return nil
	}
	if f.handshakePort > 65535 {
		return fmt.Errorf("--handshake-port %d: want a TCP port from 1 to 65535", f.handshakePort)
	}
	if tcp && f.handshakePort == 0 {
		return errors.New("--tcp serves the stream transport on the --addr port, where the handshakes would go: give --handshake-port N")
	}
	if f.allow != "" {
		if _, err := f.matcher(nil); err != nil {
			return err
		}
	}
	return nil
}

// matcher compiles --allow, or allows the trust domain of src's SVID.
func (f *identityFlags) matcher(src identity.Source) (*identity.Matcher, error) {
	if f.allow == "" {
		svid, err := src.GetX509SVID()
		if err != nil {
			return nil, fmt.Errorf("--identity %s: %w", f.dir, err)
		}
		return identity.AllowTrustDomain(svid.ID.TrustDomain()), nil
	}
	var patterns []string
	for _, p := range strings.Split(f.allow, ",") {
		patterns = append(patterns, strings.TrimSpace(p))
	}
	m, err := identity.NewMatcher(patterns...)
	if err != nil {
		return nil, fmt.Errorf("--allow %q: %w", f.allow, err)
	}
	return m, nil
}

// config loads --identity into a handshake configuration with a table of
// its own.
func (f *identityFlags) config(log *slog.Logger) (*identity.Config, *identity.FileSource, error) {
	src, err := identity.LoadDir(f.dir)
	if err != nil {
		return nil, nil, err
	}
	allow, err := f.matcher(src)
	if err != nil {
		return nil, nil, err
	}
	table, err := identity.NewTable(identity.TableConfig{})
	if err != nil {
		return nil, nil, err
	}
	return &identity.Config{Source: src, Allow: allow, Table: table, HandshakePort: uint16(f.handshakePort), Logger: log}, src, nil
}

// serveSealing is the identity side of a running serve: the handshake
// listener, the table's timers and the identity files' watch.
type serveSealing struct {
	flags  *identityFlags
	log    *slog.Logger
	cfg    *identity.Config
	src    *identity.FileSource
	mode   runtime.SealMode
	ln     *identity.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// setup loads the identity and returns the runtime option that installs
// the sealer (nil, nil without --identity).
func (f *identityFlags) setup(log *slog.Logger) (*serveSealing, []runtime.Option, error) {
	if f.dir == "" {
		return nil, nil, nil
	}
	cfg, src, err := f.config(log)
	if err != nil {
		return nil, nil, err
	}
	p := &serveSealing{flags: f, log: log, cfg: cfg, src: src, mode: runtime.SealPermissive}
	if f.requireSealed {
		p.mode = runtime.SealStrict
	}
	return p, []runtime.Option{runtime.WithSealer(identity.NewServer(cfg.Table, p.mode))}, nil
}

// start opens the handshake listener beside srv and runs it, the table's
// key updates and expiry, and the reload of the identity files.
func (p *serveSealing) start(srv *runtime.Server) error {
	if p == nil {
		return nil
	}
	addr := identity.HandshakeAddr(srv.Addr(), uint16(p.flags.handshakePort))
	ln, err := identity.Listen(addr, p.cfg)
	if err != nil {
		return fmt.Errorf("--handshake-port: %w", err)
	}
	p.ln = ln
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(3)
	go func() {
		defer p.wg.Done()
		if err := ln.Serve(); err != nil {
			p.log.Error("zerohop identity: handshake listener stopped", "err", err)
		}
	}()
	go func() { defer p.wg.Done(); p.cfg.Table.Run(ctx, 0) }()
	go func() {
		defer p.wg.Done()
		p.src.Watch(ctx, 0, func(err error) {
			p.log.Warn("zerohop identity: the identity files changed but do not load; the previous identity stays", "dir", p.flags.dir, "err", err)
		})
	}()
	svid, _ := p.src.GetX509SVID()
	p.log.Info("zerohop identity", "spiffe_id", svid.ID.String(), "expires", svid.Certificates[0].NotAfter,
		"handshake", ln.Addr().String(), "mode", p.mode.String(), "allow", p.cfg.Allow.String())
	return nil
}

// sessions is what the admin endpoint reads (nil without --identity).
func (p *serveSealing) sessions() telemetry.SessionSource {
	if p == nil {
		return nil
	}
	return p.cfg.Table
}

// stop closes the listener and stops the timers, after the server's
// shutdown.
func (p *serveSealing) stop() {
	if p == nil || p.ln == nil {
		return
	}
	p.cancel()
	p.ln.Close()
	p.wg.Wait()
	p.cfg.Table.CloseAll()
}

// clientOption is call's sealer for --identity (nil without it).
func (f *identityFlags) clientOption(log *slog.Logger) (runtime.ClientOption, error) {
	if f.dir == "" {
		return nil, nil
	}
	cfg, _, err := f.config(log)
	if err != nil {
		return nil, err
	}
	cl, err := identity.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	return runtime.WithClientSealer(cl), nil
}
