package runtime

import (
	"context"
	"errors"
	"net/netip"
)

// ErrNoEndpoints: the service's resolver reported no endpoint that can be
// picked. Calls fail with it (wrapped, naming the service) at once.
var ErrNoEndpoints = errors.New("runtime: no endpoints")

// Service discovery plugs into the runtime through the interfaces below,
// the way grpc-go's resolvers do: a ResolverBuilder (from mesh/discovery or
// the application) watches one service and pushes every new set of its
// endpoints to a ResolverConn that the Client gives it. The runtime never
// imports an implementation.

// Endpoint is one server of a service, as discovery reports it.
type Endpoint struct {
	// Addr is where the server listens: its UDP port, and its TCP port
	// when it serves the stream transport.
	Addr netip.AddrPort
	// Weight is the endpoint's share of the service's calls relative to
	// the other endpoints; 0 counts as 1.
	Weight uint32
	// Zone is the locality the endpoint runs in ("" when unknown), for
	// zone-aware picking.
	Zone string
	// Version is the version the server announces ("" when unknown).
	Version string
	// Health is what the discovery source knows of the endpoint.
	Health EndpointHealth
	// Attributes holds source-specific labels (a Kubernetes pod name, an
	// etcd key). They are read-only once the Endpoint is handed over.
	Attributes map[string]string
}

// EndpointHealth is an endpoint's state as a discovery source or a health
// checker sees it.
type EndpointHealth uint8

const (
	// HealthServing: ready for calls.
	HealthServing EndpointHealth = iota
	// HealthDraining: still answering but going away (a draining PONG, a
	// terminating Kubernetes endpoint): picked only when nothing serving
	// is left.
	HealthDraining
	// HealthUnhealthy: known not to serve; never picked.
	HealthUnhealthy
)

func (h EndpointHealth) String() string {
	switch h {
	case HealthServing:
		return "serving"
	case HealthDraining:
		return "draining"
	case HealthUnhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// ResolverState is one complete set of a service's endpoints. Each update
// replaces the previous set; an empty set means the service has no
// endpoints now (calls fail fast with ErrNoEndpoints).
type ResolverState struct {
	Endpoints []Endpoint
}

// ResolverConn is the Client's side of a resolver. Both methods may be
// called from any goroutine, at any time until the Resolver is closed.
type ResolverConn interface {
	// UpdateState hands over the service's current endpoints. The Client
	// keeps its own copy; state is the resolver's again after the call.
	UpdateState(state ResolverState)
	// ReportError says the source failed (etcd unreachable, a file that
	// does not parse). The Client keeps the last endpoints it was given,
	// logs the error at WARN, counts it, and waits for the next update.
	ReportError(err error)
}

// ResolverBuilder starts watching one service. Build must return quickly:
// the first UpdateState may come later, from the resolver's own goroutine
// (the Client waits for it, bounded by the call's context).
type ResolverBuilder interface {
	Build(service string, cc ResolverConn) (Resolver, error)
}

// Resolver is a running watch of one service.
type Resolver interface {
	// ResolveNow asks for a fresh look at the source; a hint, it may be
	// ignored.
	ResolveNow()
	// Close stops the watch. No UpdateState or ReportError follows its
	// return.
	Close()
}

// Registry announces a serving Server to a discovery source (WithRegistry).
type Registry interface {
	// Register announces service at ep and keeps the announcement alive
	// (leases, keep-alives, re-registering after a lost session) until the
	// returned Registration is withdrawn. An error means it could not be
	// announced at all.
	Register(ctx context.Context, service string, ep Endpoint) (Registration, error)
}

// Registration is one announcement made by a Registry.
type Registration interface {
	// Deregister withdraws the announcement (revoking its lease) so that
	// clients stop picking the endpoint; the Server calls it first thing
	// on Shutdown, before draining.
	Deregister(ctx context.Context) error
}
