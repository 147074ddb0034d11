package telemetry

import (
	"net/netip"
	"sync"

	"github.com/zerohop/zerohop/runtime"
)

// Clients is a ClientSource over the runtime.Clients a process calls
// other services with: at each scrape it reads (*runtime.Client).Stats of
// every Client added, so each endpoint exports its calls in flight and
// its transport counters (ClientCoverage.Transport).
//
// The runtime keeps no per-method client counters, endpoint health or
// breaker state yet, so Clients covers none of them and the metrics made
// of them (zerohop_client_*, zerohop_endpoints, zerohop_breaker_state) are
// not registered for it.
//
// Clients of one endpoint share their counters (one engine, one endpoint
// table), so Clients reports an endpoint once per service and address,
// however many Clients of it were added. A UDP and a TCP
// Client of the same address are different endpoints that Clients cannot
// tell apart: give them different service names.
type Clients struct {
	mu      sync.Mutex
	entries []clientEntry
}

type clientEntry struct {
	service string
	addr    netip.AddrPort
	c       *runtime.Client
}

var _ ClientSource = (*Clients)(nil)

// Add reports c's endpoint under service ("" for a Client that calls an
// address rather than a service) from the next scrape on.
func (cs *Clients) Add(service string, c *runtime.Client) {
	addr := c.RemoteAddr()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, e := range cs.entries {
		if e.c == c && e.service == service {
			return
		}
	}
	cs.entries = append(cs.entries, clientEntry{service: service, addr: addr, c: c})
}

// Remove stops reporting c under every service it was added with (call
// it when c closes); its endpoint stays reported while another Client
// added for it remains.
func (cs *Clients) Remove(c *runtime.Client) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	kept := cs.entries[:0]
	for _, e := range cs.entries {
		if e.c != c {
			kept = append(kept, e)
		}
	}
	clear(cs.entries[len(kept):])
	cs.entries = kept
}

// ClientCoverage implements ClientSource: endpoints and their transport
// counters only.
func (cs *Clients) ClientCoverage() ClientCoverage { return ClientCoverage{Transport: true} }

// ClientStats implements ClientSource. Client.Stats loads atomics; the
// lock here is Clients' own, never one a loop takes.
func (cs *Clients) ClientStats() ClientStats {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	st := ClientStats{Endpoints: make([]EndpointStats, 0, len(cs.entries))}
	type key struct {
		service string
		addr    netip.AddrPort
	}
	seen := make(map[key]bool, len(cs.entries))
	for _, e := range cs.entries {
		k := key{e.service, e.addr}
		if seen[k] {
			continue
		}
		seen[k] = true
		t := e.c.Stats()
		st.Endpoints = append(st.Endpoints, EndpointStats{Service: e.service, Addr: e.addr, InFlight: int(t.InFlight), Transport: t})
	}
	return st
}
