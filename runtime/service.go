package runtime

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// DialService returns a Client calling the service named service
// ("pkg.Service"): WithResolver says where its endpoints come from (it is
// required), WithBalancer how one is picked per attempt (round robin by
// default; mesh/balance has p2c over peak-EWMA). Each attempt goes to the
// endpoint the picker chose; an attempt that fails — no reply within its
// timeout, an ICMP port unreachable, an OVERLOADED or RATE_LIMITED answer
// (a draining server answers OVERLOADED) — is sent again to another
// endpoint, within the call's deadline and the service's retry budget
// (WithRetryBudget), so an outage cannot multiply the load.
//
// The first call waits, within its context, for the resolver's first
// update. Endpoints are entries of the engine's table like any Dial's;
// a Client from DialService costs no thread and no socket either.
func DialService(name string, opts ...ClientOption) (*Client, error) {
	cfg := defaultClientConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if name == "" {
		return nil, errors.New("runtime: DialService: empty service name")
	}
	if cfg.resolver == nil {
		return nil, fmt.Errorf("runtime: DialService %s: no resolver: give WithResolver (mesh/discovery has static, etcd, kubernetes and node resolvers)", name)
	}
	eng := cfg.engine
	var err error
	if eng == nil {
		if eng, err = DefaultEngine(); err != nil {
			return nil, fmt.Errorf("runtime: DialService %s: %w", name, err)
		}
	}
	c := &Client{eng: eng, cfg: cfg}
	if cfg.sealer != nil {
		if c.seal, err = eng.sealing(cfg.sealer); err != nil {
			return nil, fmt.Errorf("runtime: DialService %s: %w", name, err)
		}
	}
	if cfg.caller != "" {
		c.caller = []byte(cfg.caller)
	}
	c.calls.New = func() any { return &Call{client: c, ownCh: make(chan *Call, 1), heapIndex: -1} }
	svc := &service{name: name, eng: eng, client: c, loop: eng.pickLoop(), subconns: map[netip.AddrPort]*SubConn{},
		ready: make(chan struct{}), budget: newRetryBudget(cfg.retryRatio, cfg.retryMinPerSec)}
	c.svc = svc
	builder := cfg.balancer
	if builder == nil {
		builder = roundRobinBuilder{}
	}
	svc.balancer = builder.Build(svc)
	svc.resolver, err = cfg.resolver.Build(name, svc)
	if err != nil {
		svc.balancer.Close()
		return nil, fmt.Errorf("runtime: DialService %s: resolver: %w", name, err)
	}
	return c, nil
}

// service is the state of a DialService client: its endpoints as
// SubConns, the balancer and its current picker, the retry budget.
type service struct {
	name     string
	eng      *Engine
	client   *Client
	loop     *clientLoop // every endpoint of the service lives on this loop, so a call can move between them
	resolver Resolver
	balancer Balancer
	picker   atomic.Pointer[pickerBox]
	budget   *retryBudget

	mu        sync.Mutex // resolver updates, pingers, closing
	subconns  map[netip.AddrPort]*SubConn
	pingers   map[*SubConn]*Client
	ready     chan struct{} // closed with the first update
	readyOnce sync.Once
	closed    bool

	resolveErrs atomic.Uint64
	failovers   atomic.Uint64
	lastErr     atomic.Pointer[error]
}

type pickerBox struct{ p Picker }

// Service implements BalancerConn.
func (s *service) Service() string { return s.name }

// UpdatePicker implements BalancerConn.
func (s *service) UpdatePicker(p Picker) { s.picker.Store(&pickerBox{p}) }

// UpdateState implements ResolverConn: it turns the endpoints into
// SubConns (keeping those of endpoints that stay) and hands them to the
// balancer.
func (s *service) UpdateState(state ResolverState) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	next := make(map[netip.AddrPort]*SubConn, len(state.Endpoints))
	list := make([]*SubConn, 0, len(state.Endpoints))
	for _, e := range state.Endpoints {
		ap := netip.AddrPortFrom(e.Addr.Addr().Unmap(), e.Addr.Port())
		if !ap.IsValid() || ap.Port() == 0 || next[ap] != nil {
			continue
		}
		sc := s.subconns[ap]
		if sc == nil {
			ep, err := s.eng.acquireOn(endpointKey{tcp: s.client.cfg.tcp, addr: ap}, s.loop)
			if err != nil {
				continue
			}
			sc = &SubConn{ep: ep, svc: s}
		}
		sc.info.Store(&e)
		next[ap] = sc
		list = append(list, sc)
	}
	var gone []*SubConn
	for ap, sc := range s.subconns {
		if next[ap] == nil {
			gone = append(gone, sc)
		}
	}
	s.subconns = next
	sort.Slice(list, func(i, j int) bool { return list[i].Addr().Compare(list[j].Addr()) < 0 })
	s.balancer.UpdateState(BalancerState{SubConns: list})
	for _, sc := range gone {
		if p := s.pingers[sc]; p != nil {
			p.Close()
			delete(s.pingers, sc)
		}
		s.eng.release(sc.ep)
	}
	s.mu.Unlock()
	s.readyOnce.Do(func() { close(s.ready) })
}

// ReportError implements ResolverConn: the last endpoints stay.
func (s *service) ReportError(err error) {
	s.resolveErrs.Add(1)
	s.lastErr.Store(&err)
	s.eng.cfg.logger.Warn("zerohop service discovery failed; keeping the last endpoints",
		"service", s.name, "err", err, "errors", s.resolveErrs.Load())
}

// pinger is a Client on sc's endpoint, for SubConn.Ping; nil once the
// service is closed or sc no longer one of its endpoints (a pinger made
// then would never be closed).
func (s *service) pinger(sc *SubConn) *Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.subconns[sc.Addr()] != sc {
		return nil
	}
	if p := s.pingers[sc]; p != nil {
		return p
	}
	if s.pingers == nil {
		s.pingers = map[*SubConn]*Client{}
	}
	ep, err := s.eng.acquireOn(sc.ep.key, s.loop)
	if err != nil {
		return nil
	}
	p := &Client{eng: s.eng, ep: ep, cfg: defaultClientConfig()}
	p.calls.New = func() any { return &Call{client: p, ownCh: make(chan *Call, 1), heapIndex: -1} }
	s.pingers[sc] = p
	return p
}

// pick chooses the SubConn of an attempt.
func (s *service) pick(info *PickInfo) (*SubConn, error) {
	box := s.picker.Load()
	if box == nil {
		return nil, fmt.Errorf("%w: service %s: no picker yet", ErrNoEndpoints, s.name)
	}
	sc, err := box.p.Pick(info)
	if err != nil {
		if errors.Is(err, ErrNoSubConnAvailable) {
			err = ErrNoEndpoints
		}
		return nil, fmt.Errorf("service %s: %w", s.name, err)
	}
	if sc == nil || sc.svc != s {
		return nil, fmt.Errorf("%w: service %s: the picker chose no endpoint of this service", ErrNoEndpoints, s.name)
	}
	return sc, nil
}

// waitReady waits for the resolver's first update.
func (s *service) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		msg := "waiting for the resolver's first update"
		if e := s.lastErr.Load(); e != nil {
			return fmt.Errorf("%s (last resolver error: %w): %w", msg, *e, ctx.Err())
		}
		return fmt.Errorf("%s: %w", msg, ctx.Err())
	}
}

// close stops the resolver and the balancer and lets go of the endpoints.
func (s *service) close() {
	s.resolver.Close()
	s.mu.Lock()
	s.closed = true
	subconns := s.subconns
	s.subconns = nil
	pingers := s.pingers
	s.pingers = nil
	s.mu.Unlock()
	s.balancer.Close()
	for _, p := range pingers {
		p.Close()
	}
	for _, sc := range subconns {
		s.eng.release(sc.ep)
	}
}

// endpoints is a snapshot of the service's SubConns.
func (s *service) endpoints() []*SubConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*SubConn, 0, len(s.subconns))
	for _, sc := range s.subconns {
		out = append(out, sc)
	}
	return out
}

// retryBudget bounds failovers to a share of the calls, as Finagle's
// RetryBudget and Linkerd's retry budgets do: over a sliding window of
// retryWindow (10 one-second buckets), retries may number at most
// ratio × calls + minPerSec × 10 s. With the defaults (20 %, 10/s) a
// service of 1,000 calls/s may fail over 200/s, and a quiet one still
// 10/s. Written on the service's loop only; atomics because Stats reads.
type retryBudget struct {
	ratio     float64
	minPerSec float64
	calls     [retryBuckets]atomic.Uint64
	retries   [retryBuckets]atomic.Uint64
	bucketSec [retryBuckets]atomic.Int64
	refused   atomic.Uint64
}

const retryBuckets = 10

func newRetryBudget(ratio, minPerSec float64) *retryBudget {
	return &retryBudget{ratio: ratio, minPerSec: minPerSec}
}

func (b *retryBudget) bucket(nowSec int64) int {
	i := int(nowSec % retryBuckets)
	if b.bucketSec[i].Load() != nowSec {
		b.bucketSec[i].Store(nowSec)
		b.calls[i].Store(0)
		b.retries[i].Store(0)
	}
	return i
}

// call counts a call's first attempt.
func (b *retryBudget) call(now time.Time) { b.calls[b.bucket(now.Unix())].Add(1) }

// allow takes a retry from the budget, or reports there is none left.
func (b *retryBudget) allow(now time.Time) bool {
	sec := now.Unix()
	cur := b.bucket(sec)
	var calls, retries uint64
	for i := range retryBuckets {
		if sec-b.bucketSec[i].Load() < retryBuckets {
			calls += b.calls[i].Load()
			retries += b.retries[i].Load()
		}
	}
	if float64(retries+1) > b.ratio*float64(calls)+b.minPerSec*retryBuckets {
		b.refused.Add(1)
		return false
	}
	b.retries[cur].Add(1)
	return true
}

// roundRobinBuilder is the balancer DialService uses without
// WithBalancer: round robin over the serving endpoints (the draining ones
// only when none serves), weights and load ignored.
type roundRobinBuilder struct{}

func (roundRobinBuilder) Build(cc BalancerConn) Balancer { return &roundRobin{cc: cc} }

type roundRobin struct{ cc BalancerConn }

func (r *roundRobin) UpdateState(state BalancerState) {
	var serving, draining []*SubConn
	for _, sc := range state.SubConns {
		switch sc.Endpoint().Health {
		case HealthServing:
			serving = append(serving, sc)
		case HealthDraining:
			draining = append(draining, sc)
		}
	}
	if len(serving) == 0 {
		serving = draining
	}
	r.cc.UpdatePicker(&roundRobinPicker{subconns: serving})
}

func (r *roundRobin) Done(*SubConn, *AttemptResult) {}
func (r *roundRobin) Close()                        {}

type roundRobinPicker struct {
	subconns []*SubConn
	next     atomic.Uint64
}

func (p *roundRobinPicker) Pick(info *PickInfo) (*SubConn, error) {
	n := uint64(len(p.subconns))
	if n == 0 {
		return nil, ErrNoSubConnAvailable
	}
	sc := p.subconns[(p.next.Add(1)-1)%n]
	if sc == info.Failed && n > 1 {
		sc = p.subconns[(p.next.Add(1)-1)%n]
	}
	return sc, nil
}
