package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/runtime"
)

// Builder makes resolvers that watch services in etcd
// (runtime.ResolverBuilder); see the package doc.
type Builder struct {
	cli      *clientv3.Client
	cfg      config
	counters discovery.Counters

	gets        atomic.Uint64
	errs        atomic.Uint64
	compactions atomic.Uint64
	badEntries  atomic.Uint64
}

var _ runtime.ResolverBuilder = (*Builder)(nil)

// NewBuilder returns a Builder reading through cli, which stays the
// caller's to close (after every resolver is closed).
func NewBuilder(cli *clientv3.Client, opts ...Option) (*Builder, error) {
	cfg := newConfig(opts)
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Builder{cli: cli, cfg: cfg}, nil
}

// ResolverStats counts what a Builder's resolvers did.
type ResolverStats struct {
	discovery.Stats
	// Gets is how many prefix gets succeeded (the first of each resolver,
	// and each after a compaction, a broken watch, an outage, ResolveNow).
	Gets uint64
	// Errors is how many gets, watches and probes failed.
	Errors uint64
	// Compactions is how many watches found their revision compacted.
	Compactions uint64
	// BadEntries is how many keys were left out because their value did
	// not decode.
	BadEntries uint64
}

// Stats reads the counters of every resolver the builder made.
func (b *Builder) Stats() ResolverStats {
	return ResolverStats{Stats: b.counters.Stats(), Gets: b.gets.Load(), Errors: b.errs.Load(),
		Compactions: b.compactions.Load(), BadEntries: b.badEntries.Load()}
}

// Build implements runtime.ResolverBuilder.
func (b *Builder) Build(service string, cc runtime.ResolverConn) (runtime.Resolver, error) {
	if err := discovery.ValidService(service); err != nil {
		return nil, fmt.Errorf("etcd: resolve: %w", err)
	}
	w := &watch{b: b, prefix: ServicePrefix(b.cfg.prefix, service)}
	return discovery.Start(cc, &b.counters, w.run), nil
}

// watch is the state of one resolver's goroutine.
type watch struct {
	b       *Builder
	prefix  string
	r       *discovery.Resolver
	failing bool // an outage was reported and no get succeeded since
}

// errResolveNow ends a watch so that the next round gets everything.
var errResolveNow = errors.New("ResolveNow")

func (w *watch) run(ctx context.Context, r *discovery.Resolver) {
	w.r = r
	bo := w.b.cfg.backoff()
	pause := func() {
		select {
		case <-time.After(bo.Next()):
		case <-r.Now():
		case <-ctx.Done():
		}
	}
	for ctx.Err() == nil {
		set, rev, err := w.get(ctx)
		if err != nil {
			w.fail(ctx, fmt.Errorf("etcd: get %s: %w", w.prefix, err))
			pause()
			continue
		}
		w.failing = false
		r.Conn().Update(set.State())
		start := time.Now()
		err = w.follow(ctx, set, rev)
		// A watch that lived through a probe interval was healthy: the
		// next failure starts the backoff afresh. One that breaks at once,
		// again and again, backs off like a failing get.
		if time.Since(start) >= w.b.cfg.probeInterval {
			bo.Reset()
		}
		if err != nil && !errors.Is(err, errResolveNow) {
			w.fail(ctx, err)
			pause()
		}
	}
}

// fail counts err and reports it unless this outage was reported already
// or the resolver is closing.
func (w *watch) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	w.b.errs.Add(1)
	if !w.failing {
		w.failing = true
		w.r.Conn().Error(fmt.Errorf("%w (keeping the last endpoints)", err))
	}
}

// get reads every key of the service and the revision it read at.
func (w *watch) get(ctx context.Context) (discovery.Set, int64, error) {
	rctx, cancel := context.WithTimeout(ctx, w.b.cfg.requestTimeout)
	defer cancel()
	resp, err := w.b.cli.Get(rctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	w.b.gets.Add(1)
	set := make(discovery.Set, len(resp.Kvs))
	var bad []error
	for _, kv := range resp.Kvs {
		if err := w.apply(set, clientv3.EventTypePut, kv.Key, kv.Value); err != nil {
			bad = append(bad, err)
		}
	}
	w.reportBad(bad)
	return set, resp.Header.Revision, nil
}

// apply makes set follow one put or delete; a put whose value does not
// decode removes the key too, and is returned.
func (w *watch) apply(set discovery.Set, typ mvccpb.Event_EventType, key, val []byte) error {
	k := string(key)
	if typ == clientv3.EventTypeDelete {
		delete(set, k)
		return nil
	}
	ep, err := DecodeEndpoint(w.prefix, k, val)
	if err != nil {
		delete(set, k)
		w.b.badEntries.Add(1)
		return err
	}
	set[k] = ep
	return nil
}

func (w *watch) reportBad(bad []error) {
	if len(bad) > 0 {
		w.r.Conn().Error(fmt.Errorf("etcd: %d entries under %s left out: %w", len(bad), w.prefix, errors.Join(bad...)))
	}
}

// follow watches the service's keys from the revision after rev, pushing
// set after each batch of events, until the watch needs a fresh get: it
// returns errResolveNow for ResolveNow, for a compacted revision and for
// etcd reachable again after an outage, another error for a broken watch,
// and nil when ctx ends.
func (w *watch) follow(ctx context.Context, set discovery.Set, rev int64) error {
	// Watch blocks until etcd takes the request, for as long as etcd is
	// unreachable, so it is called from a goroutine of its own while this
	// one goes on probing; events stays nil (never ready) until then.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	created := make(chan clientv3.WatchChan, 1)
	go func() { created <- w.b.cli.Watch(wctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) }()
	defer func() {
		cancel()
		<-created // Watch returns once wctx ended (or took it already)
	}()
	var events clientv3.WatchChan
	pending := created
	probe := time.NewTicker(w.b.cfg.probeInterval)
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.r.Now():
			return errResolveNow
		case events = <-pending:
			created <- events // for the deferred wait
			pending = nil
		case resp, ok := <-events:
			switch {
			case !ok:
				return fmt.Errorf("etcd: watch %s: closed", w.prefix)
			case resp.CompactRevision != 0:
				w.b.compactions.Add(1)
				return errResolveNow
			case resp.Err() != nil:
				return fmt.Errorf("etcd: watch %s: %w", w.prefix, resp.Err())
			}
			var bad []error
			for _, ev := range resp.Events {
				if err := w.apply(set, ev.Type, ev.Kv.Key, ev.Kv.Value); err != nil {
					bad = append(bad, err)
				}
			}
			w.reportBad(bad)
			if len(resp.Events) > 0 {
				w.r.Conn().Update(set.State())
			}
		case <-probe.C:
			err := w.probe(ctx)
			switch {
			case err != nil:
				w.fail(ctx, fmt.Errorf("etcd: probe %s: %w", w.prefix, err))
			case w.failing:
				return errResolveNow // back: get afresh, tell the client
			}
		}
	}
}

// probe reads the count of the service's keys, linearizably: it fails when
// etcd cannot be reached or has no leader.
func (w *watch) probe(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, w.b.cfg.requestTimeout)
	defer cancel()
	_, err := w.b.cli.Get(rctx, w.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	return err
}
