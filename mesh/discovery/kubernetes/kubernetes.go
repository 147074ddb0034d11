package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// Option configures NewBuilder.
type Option func(*config)

type config struct {
	port        string
	serviceName func(string) string
	resync      time.Duration
}

// WithPort chooses the EndpointSlice port by name (default "": a slice's
// only port, or else its unnamed one).
func WithPort(name string) Option { return func(c *config) { c.port = name } }

// WithServiceName maps the zerohop service name given to Build to the
// Kubernetes Service name (default: the name as given).
func WithServiceName(f func(service string) string) Option {
	return func(c *config) { c.serviceName = f }
}

// WithResync sets the informer's resync period (default 0: none; the
// informer's cache is complete without it, and each resync only repeats
// the state).
func WithResync(d time.Duration) Option { return func(c *config) { c.resync = d } }

// Builder makes resolvers over the EndpointSlices of one namespace
// (runtime.ResolverBuilder); see the package doc.
type Builder struct {
	client    k8s.Interface
	namespace string
	cfg       config
	counters  discovery.Counters

	rebuilds    atomic.Uint64
	skipped     atomic.Uint64
	watchErrors atomic.Uint64
}

var _ runtime.ResolverBuilder = (*Builder)(nil)

// NewBuilder returns a Builder reading EndpointSlices of namespace through
// client (a clientset from rest.InClusterConfig or a kubeconfig; in tests
// k8s.io/client-go/kubernetes/fake).
func NewBuilder(client k8s.Interface, namespace string, opts ...Option) (*Builder, error) {
	if client == nil {
		return nil, fmt.Errorf("kubernetes: NewBuilder: the client is nil; make one with kubernetes.NewForConfig(rest.InClusterConfig())")
	}
	if namespace == "" {
		return nil, fmt.Errorf("kubernetes: NewBuilder: the namespace is empty; give the Service's namespace (\"default\" if unsure)")
	}
	cfg := config{serviceName: func(s string) string { return s }}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.serviceName == nil {
		return nil, fmt.Errorf("kubernetes: WithServiceName(nil): give a mapping, or leave the option out")
	}
	if cfg.resync < 0 {
		return nil, fmt.Errorf("kubernetes: WithResync(%v): must not be negative", cfg.resync)
	}
	return &Builder{client: client, namespace: namespace, cfg: cfg}, nil
}

// Stats counts what a Builder's resolvers did.
type Stats struct {
	discovery.Stats
	// Rebuilds is how many times a state was computed from the slices.
	Rebuilds uint64
	// Skipped is how many slice endpoints were left out (FQDN slices,
	// unusable addresses).
	Skipped uint64
	// WatchErrors is how many times an informer's list or watch failed.
	WatchErrors uint64
}

// Stats reads the counters of every resolver the builder made.
func (b *Builder) Stats() Stats {
	return Stats{Stats: b.counters.Stats(), Rebuilds: b.rebuilds.Load(), Skipped: b.skipped.Load(), WatchErrors: b.watchErrors.Load()}
}

// Build implements runtime.ResolverBuilder.
func (b *Builder) Build(service string, cc runtime.ResolverConn) (runtime.Resolver, error) {
	name := b.cfg.serviceName(service)
	if name == "" {
		return nil, fmt.Errorf("kubernetes: service %q maps to an empty Service name (WithServiceName)", service)
	}
	if errs := validation.IsValidLabelValue(name); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes: service %q maps to %q, which cannot be a Service name (WithServiceName): %s",
			service, name, strings.Join(errs, "; "))
	}
	w := &watch{b: b, name: name}
	return discovery.Start(cc, &b.counters, w.run), nil
}

// watch is the state of one resolver's goroutine.
type watch struct {
	b       *Builder
	name    string // the Kubernetes Service
	failing bool   // a watch error was reported and no event came since
	problem string // the port problem reported last
}

func (w *watch) run(ctx context.Context, r *discovery.Resolver) {
	selector := discoveryv1.LabelServiceName + "=" + w.name
	factory := informers.NewSharedInformerFactoryWithOptions(w.b.client, w.b.cfg.resync,
		informers.WithNamespace(w.b.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := factory.Discovery().V1().EndpointSlices().Informer()

	// The informer's goroutines only signal; this one reads the cache and
	// pushes, so a burst of events gives one state.
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	watchErrs := make(chan error, 1)
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(any, any) { signal() },
		DeleteFunc: func(any) { signal() },
	}); err != nil {
		r.Conn().Error(fmt.Errorf("kubernetes: watch %s/%s: %w", w.b.namespace, w.name, err))
		return
	}
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, rf *cache.Reflector, err error) {
		w.b.watchErrors.Add(1)
		select {
		case watchErrs <- err:
		default:
		}
		cache.DefaultWatchErrorHandler(ctx, rf, err)
	})
	factory.StartWithContext(ctx)
	defer factory.Shutdown()

	synced := make(chan struct{})
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			close(synced)
		}
	}()
	ready := false
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-watchErrs:
			if !w.failing {
				w.failing = true
				r.Conn().Error(fmt.Errorf("kubernetes: list/watch EndpointSlices of %s/%s: %w (keeping the last endpoints)", w.b.namespace, w.name, err))
			}
			continue
		case <-synced:
			ready, synced = true, nil
		case <-changed:
			w.failing = false
		case <-r.Now():
		}
		if ready {
			w.push(r, inf.GetStore())
		}
	}
}

// push computes the state from the informer's cache.
func (w *watch) push(r *discovery.Resolver, store cache.Store) {
	var items []*discoveryv1.EndpointSlice
	for _, obj := range store.List() {
		// The label selector already chose these; checked again so that a
		// source that ignores selectors cannot mix Services.
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] == w.name {
			items = append(items, s)
		}
	}
	m := merge(items, w.b.cfg.port)
	w.b.rebuilds.Add(1)
	w.b.skipped.Add(uint64(m.skipped))
	if p := m.problem(w.name, w.b.namespace, w.b.cfg.port); p != w.problem {
		w.problem = p
		if p != "" {
			r.Conn().Error(errors.New(p))
		}
	}
	r.Conn().Update(m.set.State())
}
