package telemetry

import (
	"net/netip"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// ServerSource is what telemetry reads of a server. *runtime.Server
// implements it; Stats must stay a snapshot of atomic counters (it is
// called on every scrape and must never take a lock an event loop takes).
type ServerSource interface {
	Stats() runtime.Stats
	Addr() netip.AddrPort
	Backend() runtime.Backend
	// Draining is true once Shutdown has begun (/healthz answers 503).
	Draining() bool
}

// XDPSource is what telemetry reads of an interface's steering program.
// *bpf.Maps (and so *bpf.Program) implements it.
type XDPSource interface {
	Counters() (bpf.Counters, error)
	ACLRules() ([]bpf.ACLRule, error)
	Services() ([]bpf.Service, error)
	Slots() ([]bpf.SlotInfo, error)
}

// Distribution is a latency histogram as the runtime keeps them;
// *runtime.Histogram implements it.
type Distribution interface {
	Count() uint64
	Sum() time.Duration
	CountBelow(d time.Duration) uint64
	Quantile(q float64) time.Duration
}

// ClientSource is the interface telemetry expects of the client engine
// (proposed: the engine, or a small adapter over its Stats, implements it).
// ClientStats is called on every scrape and, like runtime.Server.Stats,
// must only read counters the calling loops update atomically.
type ClientSource interface {
	ClientStats() ClientStats
}

// ClientStats is one snapshot of a process's client side.
type ClientStats struct {
	// Methods holds one entry per (service, method) called so far.
	Methods []ClientMethodStats
	// Endpoints holds every endpoint the client knows of, per service.
	Endpoints []EndpointStats
}

// ClientMethodStats are the counters of calls to one method of one
// service (Service "" for a Client dialled to an address).
type ClientMethodStats struct {
	Service, Method string
	// Statuses counts calls that ended with an answer, by its status.
	Statuses map[proto.Status]uint64
	// Failures counts calls that ended without one, by reason — one of
	// the Failure* constants.
	Failures map[string]uint64
	// Attempts counts transmissions: first attempts, retransmissions and
	// failovers to another endpoint.
	Attempts uint64
	// Latency is from the call's start to its end (nil: not kept).
	Latency Distribution
}

// Reasons a call ended without an answer, as ClientMethodStats.Failures
// and the status label of zerohop_client_requests_total name them.
const (
	FailureNoReply     = "NO_REPLY"     // every attempt timed out
	FailureCancelled   = "CANCELLED"    // the caller's context ended first
	FailureNoEndpoints = "NO_ENDPOINTS" // the resolver had nothing to pick
	FailureRefused     = "REFUSED"      // an interceptor (a breaker) refused every attempt
	FailureSocket      = "SOCKET_ERROR" // the socket reported an error (ICMP unreachable)
)

// EndpointState is what the client thinks of one endpoint.
type EndpointState string

// Endpoint states, the state label of zerohop_endpoints.
const (
	EndpointServing   EndpointState = "serving"
	EndpointDraining  EndpointState = "draining"
	EndpointEjected   EndpointState = "ejected"   // outlier detection took it out
	EndpointUnhealthy EndpointState = "unhealthy" // discovery or probing says it does not serve
)

// EndpointStats is one endpoint of a service as the client sees it.
type EndpointStats struct {
	Service string
	Addr    netip.AddrPort
	State   EndpointState
	// BreakerDrop is the circuit breaker's current drop probability for
	// the endpoint (the largest over its methods): 0 passes everything.
	BreakerDrop float64
	// InFlight counts calls outstanding to the endpoint.
	InFlight int
}
