package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// Attributes the resolver sets on an endpoint.
const (
	AttrPID     = "node.pid"
	AttrNetns   = "node.netns"
	AttrIfindex = "node.ifindex"
)

// DefaultInterval is how often a resolver lists the table.
const DefaultInterval = 250 * time.Millisecond

// Option configures NewBuilder.
type Option func(*Builder) error

// WithInterval sets how often a resolver lists the table (default
// DefaultInterval).
func WithInterval(d time.Duration) Option {
	return func(b *Builder) error {
		if d <= 0 {
			return fmt.Errorf("node: WithInterval(%v): must be positive (default %v)", d, DefaultInterval)
		}
		b.interval = d
		return nil
	}
}

// WithTable makes the Builder read through t, which stays the caller's,
// instead of opening a table handle of its own.
func WithTable(t *bpf.NodeTable) Option {
	return func(b *Builder) error {
		if t == nil {
			return errors.New("node: WithTable(nil): give an open table, or leave the option out")
		}
		b.table = t
		return nil
	}
}

// Builder makes resolvers that read the node table
// (runtime.ResolverBuilder).
type Builder struct {
	table    *bpf.NodeTable
	owned    bool
	interval time.Duration
	counters discovery.Counters
	lists    atomic.Uint64
	errs     atomic.Uint64
}

var _ runtime.ResolverBuilder = (*Builder)(nil)

// NewBuilder opens the node table (unless WithTable gives one) and
// returns a Builder reading it. Close releases the handle it opened.
func NewBuilder(opts ...Option) (*Builder, error) {
	b := &Builder{interval: DefaultInterval}
	for _, o := range opts {
		if err := o(b); err != nil {
			return nil, err
		}
	}
	if b.table == nil {
		t, err := bpf.OpenNodeTable(bpf.NodeOptions{HeartbeatInterval: -1})
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		b.table, b.owned = t, true
	}
	return b, nil
}

// Close releases the table handle NewBuilder opened (after every resolver
// is closed).
func (b *Builder) Close() error {
	if b.owned {
		return b.table.Close()
	}
	return nil
}

// Stats counts what the Builder's resolvers did.
type Stats struct {
	discovery.Stats
	// Lists is how many times the table was read, Errors how many reads
	// failed.
	Lists, Errors uint64
}

// Stats reads the counters.
func (b *Builder) Stats() Stats {
	return Stats{Stats: b.counters.Stats(), Lists: b.lists.Load(), Errors: b.errs.Load()}
}

// Build implements runtime.ResolverBuilder. The resolver's own network
// namespace is the calling thread's.
func (b *Builder) Build(service string, cc runtime.ResolverConn) (runtime.Resolver, error) {
	if err := discovery.ValidService(service); err != nil {
		return nil, fmt.Errorf("node: resolve: %w", err)
	}
	if len(service) > bpf.NodeServiceMax {
		return nil, fmt.Errorf("node: resolve %q: the node table holds service names of at most %d bytes", service, bpf.NodeServiceMax)
	}
	netns, err := bpf.CurrentNetnsInode()
	if err != nil {
		return nil, fmt.Errorf("node: resolve %s: %w", service, err)
	}
	return discovery.Start(cc, &b.counters, func(ctx context.Context, r *discovery.Resolver) {
		b.watch(ctx, r, service, netns)
	}), nil
}

func (b *Builder) watch(ctx context.Context, r *discovery.Resolver, service string, netns uint64) {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	failing := false
	for {
		all, err := b.table.List()
		if err != nil {
			b.errs.Add(1)
			if !failing && ctx.Err() == nil {
				failing = true
				r.Conn().Error(fmt.Errorf("node: listing the node table: %w (keeping the last endpoints)", err))
			}
		} else {
			b.lists.Add(1)
			failing = false
			r.Conn().Update(Endpoints(all, service, netns).State())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.Now():
		}
	}
}

// Endpoints picks service's endpoints out of the table's entries, as a
// client in network namespace netns sees them (see the package doc), keyed
// by address and namespace.
func Endpoints(entries []bpf.NodeEndpoint, service string, netns uint64) discovery.Set {
	set := discovery.Set{}
	for _, e := range entries {
		if e.Service != service || e.Stale {
			continue
		}
		if e.Addr.Addr().IsLoopback() && e.NetnsInode != netns {
			continue
		}
		ep := runtime.Endpoint{Addr: e.Addr, Weight: e.Weight, Zone: e.Zone, Version: e.Version, Health: healthOf(e.Health),
			Attributes: map[string]string{
				AttrPID:     strconv.FormatUint(uint64(e.PID), 10),
				AttrNetns:   strconv.FormatUint(e.NetnsInode, 10),
				AttrIfindex: strconv.Itoa(e.Ifindex),
			}}
		set[e.Addr.String()+"@"+strconv.FormatUint(e.NetnsInode, 10)] = ep
	}
	return set
}

func healthOf(h bpf.NodeHealth) runtime.EndpointHealth {
	switch h {
	case bpf.NodeDraining:
		return runtime.HealthDraining
	case bpf.NodeNotServing:
		return runtime.HealthUnhealthy
	}
	return runtime.HealthServing
}

func nodeHealth(h runtime.EndpointHealth) bpf.NodeHealth {
	switch h {
	case runtime.HealthDraining:
		return bpf.NodeDraining
	case runtime.HealthUnhealthy:
		return bpf.NodeNotServing
	}
	return bpf.NodeServing
}

// RegistryOption configures NewRegistry.
type RegistryOption func(*Registry)

// WithLogger sets where heartbeat errors go (WARN) and registrations
// (INFO); default slog.Default().
func WithLogger(l *slog.Logger) RegistryOption { return func(r *Registry) { r.logger = l } }

// Registry announces servers in the node table (runtime.Registry).
type Registry struct {
	logger        *slog.Logger
	registrations atomic.Uint64
}

var _ runtime.Registry = (*Registry)(nil)

// NewRegistry returns a Registry; each Register opens a table handle of
// its own.
func NewRegistry(opts ...RegistryOption) *Registry {
	r := &Registry{logger: slog.Default()}
	for _, o := range opts {
		o(r)
	}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	return r
}

// Register implements runtime.Registry: it writes ep as an endpoint of
// service in the calling thread's network namespace and heartbeats it
// until Deregister.
func (r *Registry) Register(ctx context.Context, service string, ep runtime.Endpoint) (runtime.Registration, error) {
	if err := discovery.ValidService(service); err != nil {
		return nil, fmt.Errorf("node: register: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("node: register %s: %w", service, err)
	}
	log := r.logger.With("service", service, "endpoint", ep.Addr.String())
	t, err := bpf.OpenNodeTable(bpf.NodeOptions{OnKeepaliveError: func(err error) {
		log.Warn("node table heartbeat failed", "err", err)
	}})
	if err != nil {
		return nil, fmt.Errorf("node: register %s at %v: %w", service, ep.Addr, err)
	}
	ne := bpf.NodeEndpoint{Service: service, Addr: ep.Addr, Version: ep.Version, Zone: ep.Zone, Weight: ep.Weight,
		Health: nodeHealth(ep.Health)}
	if err := t.Register(ne); err != nil {
		t.Close()
		return nil, fmt.Errorf("node: register %s at %v: %w", service, ep.Addr, err)
	}
	r.registrations.Add(1)
	log.Info("node table: registered", "table", t.ID())
	return &registration{t: t}, nil
}

type registration struct {
	t    *bpf.NodeTable
	once sync.Once
	err  error
}

// Deregister implements runtime.Registration: the entry is deleted at
// once. Later calls return the first call's result.
func (g *registration) Deregister(context.Context) error {
	g.once.Do(func() {
		if err := g.t.Close(); err != nil {
			g.err = fmt.Errorf("node: deregister: %w", err)
		}
	})
	return g.err
}
