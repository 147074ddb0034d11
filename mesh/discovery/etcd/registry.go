package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// Registry announces servers in etcd (runtime.Registry); see the package
// doc for the key layout and the lease's life.
type Registry struct {
	cli *clientv3.Client
	cfg config

	registrations atomic.Uint64
	failures      atomic.Uint64
	leasesLost    atomic.Uint64
}

var _ runtime.Registry = (*Registry)(nil)

// NewRegistry returns a Registry writing through cli, which stays the
// caller's to close (after every registration is withdrawn).
func NewRegistry(cli *clientv3.Client, opts ...Option) (*Registry, error) {
	cfg := newConfig(opts)
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Registry{cli: cli, cfg: cfg}, nil
}

// RegistryStats counts what a Registry did.
type RegistryStats struct {
	// Registrations is how many times a key was put with a new lease: once
	// per Register and once per re-registration after a lost lease.
	Registrations uint64
	// Failures is how many attempts to register failed (etcd unreachable,
	// a request timed out).
	Failures uint64
	// LeasesLost is how many times a live registration lost its lease.
	LeasesLost uint64
}

// Stats reads the counters.
func (r *Registry) Stats() RegistryStats {
	return RegistryStats{Registrations: r.registrations.Load(), Failures: r.failures.Load(), LeasesLost: r.leasesLost.Load()}
}

// Register implements runtime.Registry: it puts service's key for ep with
// a lease, retrying until ctx ends, and keeps it alive until Deregister.
func (r *Registry) Register(ctx context.Context, service string, ep runtime.Endpoint) (runtime.Registration, error) {
	if err := discovery.ValidService(service); err != nil {
		return nil, fmt.Errorf("etcd: register: %w", err)
	}
	val, err := EncodeEndpoint(ep)
	if err != nil {
		return nil, fmt.Errorf("etcd: register %s: %w", service, err)
	}
	life, cancel := context.WithCancel(context.Background())
	g := &registration{r: r, service: service, key: Key(r.cfg.prefix, service, ep.Addr), val: string(val),
		life: life, cancel: cancel, done: make(chan struct{})}
	alive, err := g.announce(ctx)
	if err != nil {
		cancel()
		close(g.done)
		g.revoke(context.Background()) // a lease granted before ctx ended
		return nil, fmt.Errorf("etcd: register %s at %s: %w", service, ep.Addr, err)
	}
	go g.keep(alive)
	return g, nil
}

// registration is one key kept alive by its own goroutine (keep).
type registration struct {
	r        *Registry
	service  string
	key, val string
	life     context.Context // ends at Deregister; the keep-alives run in it
	cancel   context.CancelFunc
	done     chan struct{} // closed when keep returned

	mu    sync.Mutex
	lease clientv3.LeaseID // the last lease granted, 0 before the first

	once     sync.Once
	deregErr error
}

// announce grants a lease, puts the key with it and starts its
// keep-alives, retrying with backoff until it succeeds or ctx (or the
// registration's life) ends.
func (g *registration) announce(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(g.life, stop)()
	bo := g.r.cfg.backoff()
	for attempt := 1; ; attempt++ {
		alive, err := g.attempt(ctx)
		if err == nil {
			g.r.registrations.Add(1)
			g.r.cfg.logger.Info("etcd: registered", "service", g.service, "key", g.key, "lease", fmt.Sprintf("%x", g.leaseID()), "attempts", attempt)
			return alive, nil
		}
		g.r.failures.Add(1)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
		if g.r.cli.Ctx().Err() != nil {
			return nil, fmt.Errorf("the etcd client was closed: %w", err)
		}
		wait := bo.Next()
		g.r.cfg.logger.Warn("etcd: registration failed, retrying", "service", g.service, "key", g.key,
			"attempt", attempt, "retry_in", wait, "err", err)
		if !discovery.Sleep(ctx, wait) {
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		}
	}
}

func (g *registration) attempt(ctx context.Context) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	rctx, cancel := context.WithTimeout(ctx, g.r.cfg.requestTimeout)
	defer cancel()
	granted, err := g.r.cli.Grant(rctx, g.r.cfg.ttlSeconds())
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	g.mu.Lock()
	g.lease = granted.ID
	g.mu.Unlock()
	if _, err := g.r.cli.Put(rctx, g.key, g.val, clientv3.WithLease(granted.ID)); err != nil {
		return nil, fmt.Errorf("put %s: %w", g.key, err)
	}
	alive, err := g.r.cli.KeepAlive(g.life, granted.ID)
	if err != nil {
		return nil, fmt.Errorf("keep lease %x alive: %w", granted.ID, err)
	}
	return alive, nil
}

func (g *registration) leaseID() clientv3.LeaseID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lease
}

// keep drains the keep-alive responses; the channel closes when the lease
// is lost or the registration withdrawn, and then it registers again.
func (g *registration) keep(alive <-chan *clientv3.LeaseKeepAliveResponse) {
	defer close(g.done)
	for {
		for range alive {
		}
		if g.life.Err() != nil {
			return
		}
		g.r.leasesLost.Add(1)
		g.r.cfg.logger.Warn("etcd: lease lost, registering again", "service", g.service, "key", g.key,
			"lease", fmt.Sprintf("%x", g.leaseID()))
		var err error
		if alive, err = g.announce(g.life); err != nil {
			if g.life.Err() == nil {
				g.r.cfg.logger.Warn("etcd: registration abandoned; the key goes when its lease expires",
					"service", g.service, "key", g.key, "err", err)
			}
			return
		}
	}
}

// Deregister implements runtime.Registration: it stops the keep-alives and
// revokes the lease, deleting the key. Later calls return the first
// call's result.
func (g *registration) Deregister(ctx context.Context) error {
	g.once.Do(func() {
		g.cancel()
		<-g.done
		if err := g.revoke(ctx); err != nil {
			g.deregErr = fmt.Errorf("etcd: deregister %s: %w (the key goes when the lease expires, within %ds)",
				g.key, err, g.r.cfg.ttlSeconds())
		}
	})
	return g.deregErr
}

// revoke revokes the last lease granted; one that etcd no longer knows
// (expired, revoked) is done already.
func (g *registration) revoke(ctx context.Context) error {
	id := g.leaseID()
	if id == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.r.cfg.requestTimeout)
	defer cancel()
	if _, err := g.r.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("revoke lease %x: %w", id, err)
	}
	return nil
}
