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

// ClientSource is what telemetry reads of a process's client side.
// Clients implements it over runtime.Client's per-endpoint counters; a
// source with per-method counters, endpoint health or breakers (the mesh's
// client layers) fills in more. ClientStats is called on every scrape and,
// like runtime.Server.Stats, must only read counters the calling loops
// update atomically. ClientCoverage says which parts of ClientStats the
// source fills in; it must not change over the source's life.
type ClientSource interface {
	ClientStats() ClientStats
	ClientCoverage() ClientCoverage
}

// ClientCoverage names the parts of ClientStats a ClientSource fills in.
// The metrics of a part left out are not registered: they are absent from
// /metrics (and their fields from /stat mean nothing), rather than
// exported as zeros that would look like data. Endpoints with their
// InFlight are always part of ClientStats.
type ClientCoverage struct {
	// Methods: ClientStats.Methods (zerohop_client_requests_total,
	// zerohop_client_attempts_total, zerohop_client_request_duration_seconds).
	Methods bool `json:"methods"`
	// State: EndpointStats.State (zerohop_endpoints).
	State bool `json:"state"`
	// Breaker: EndpointStats.BreakerDrop (zerohop_breaker_state).
	Breaker bool `json:"breaker"`
	// Transport: EndpointStats.Transport (zerohop_endpoint_*_total and
	// zerohop_endpoint_srtt_seconds).
	Transport bool `json:"transport"`
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
	// Transport holds the client engine's counters of the endpoint:
	// copies sent, replies, timeouts, socket errors, bad replies and the
	// smoothed round-trip time (ClientCoverage.Transport).
	Transport runtime.ClientStats
}
