package breaker

import (
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Key names one endpoint method.
type Key struct {
	Endpoint netip.AddrPort
	Method   uint32
}

// Registry holds one Breaker per endpoint method. Get is a lookup in an
// immutable map behind an atomic pointer — no lock, no allocation — and
// only the first Get of a key takes the registry's mutex to publish a new
// map (copy on write: O(n) per new key, fine for the few thousand endpoint
// methods a client talks to).
type Registry struct {
	opts Options
	mu   sync.Mutex // serializes writers
	m    atomic.Pointer[map[Key]*Breaker]
}

// NewRegistry returns an empty registry whose breakers use opts.
func NewRegistry(opts Options) *Registry {
	r := &Registry{opts: opts}
	empty := map[Key]*Breaker{}
	r.m.Store(&empty)
	return r
}

// Get returns the breaker of endpoint's method, making it on first use.
// The endpoint's address is unmapped (::ffff:a.b.c.d is a.b.c.d) so both
// spellings share one breaker.
func (r *Registry) Get(endpoint netip.AddrPort, method uint32) *Breaker {
	k := Key{netip.AddrPortFrom(endpoint.Addr().Unmap(), endpoint.Port()), method}
	if b, ok := (*r.m.Load())[k]; ok {
		return b
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.m.Load()
	if b, ok := cur[k]; ok {
		return b
	}
	next := maps.Clone(cur)
	b := New(r.opts)
	next[k] = b
	r.m.Store(&next)
	return b
}

// Forget drops every breaker of endpoint (when discovery removes it), so a
// later endpoint on the same address starts with a clean window.
func (r *Registry) Forget(endpoint netip.AddrPort) {
	endpoint = netip.AddrPortFrom(endpoint.Addr().Unmap(), endpoint.Port())
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := *r.m.Load()
	next := make(map[Key]*Breaker, len(cur))
	for k, b := range cur {
		if k.Endpoint != endpoint {
			next[k] = b
		}
	}
	r.m.Store(&next)
}

// Keys lists the endpoint methods that have a breaker, in no order.
func (r *Registry) Keys() []Key {
	cur := *r.m.Load()
	out := make([]Key, 0, len(cur))
	for k := range cur {
		out = append(out, k)
	}
	return out
}
