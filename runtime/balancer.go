package runtime

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/zerohop/zerohop/proto"
)

// Load balancing plugs into the runtime the way grpc-go's balancers do: a
// Balancer (from mesh/balance, or the application) gets every new set of a
// service's endpoints as SubConns and answers with a Picker, which the
// Client installs atomically and asks for an endpoint per attempt. The
// runtime never imports an implementation; without WithBalancer a
// DialService client picks round robin.

// SubConn is one endpoint of a service as the Client holds it: an entry
// in the engine's endpoint table with its live load figures. SubConns are
// compared by identity: the same endpoint keeps its SubConn across
// resolver updates for as long as the resolver lists it.
type SubConn struct {
	ep *endpoint
	// info is replaced by each resolver update while balancers (and their
	// decorators, from their own goroutines) read it.
	info atomic.Pointer[Endpoint]
	svc  *service
}

// Addr is the endpoint's address.
func (sc *SubConn) Addr() netip.AddrPort { return sc.ep.key.addr }

// Endpoint is what discovery said of the endpoint (weight, zone, version,
// health) in the update that made or last refreshed this SubConn.
func (sc *SubConn) Endpoint() Endpoint {
	if e := sc.info.Load(); e != nil {
		return *e
	}
	return Endpoint{}
}

// InFlight is the number of calls waiting for the endpoint's reply now.
func (sc *SubConn) InFlight() int64 { return sc.ep.inflight.Load() + sc.ep.laneInflight.Load() }

// SRTT is the endpoint's smoothed round-trip time (0 before the first
// sample).
func (sc *SubConn) SRTT() time.Duration { return time.Duration(sc.ep.srttNs.Load()) }

// Ping sends the endpoint a PING and returns the PONG's status
// (proto.PongServing or proto.PongDraining), for active health checks.
// It retransmits like a call and honours ctx.
func (sc *SubConn) Ping(ctx context.Context) (proto.Status, error) {
	p := sc.svc.pinger(sc)
	if p == nil {
		return 0, ErrClientClosed
	}
	return p.Ping(ctx)
}

// BalancerConn is the Client's side of a Balancer.
type BalancerConn interface {
	// UpdatePicker installs p for the calls that follow; from any
	// goroutine.
	UpdatePicker(p Picker)
	// Service is the service being balanced.
	Service() string
}

// BalancerBuilder makes a service's Balancer.
type BalancerBuilder interface {
	Build(cc BalancerConn) Balancer
}

// Balancer turns a service's endpoints into pickers.
type Balancer interface {
	// UpdateState hands over every endpoint the resolver lists now (those
	// it called unhealthy included, with their Endpoint().Health), one
	// goroutine at a time. The Balancer answers with UpdatePicker, now or
	// later.
	UpdateState(state BalancerState)
	// Done runs on the client loop after every attempt a picked SubConn
	// served: it must not block and should not allocate.
	Done(sc *SubConn, r *AttemptResult)
	// Close stops the Balancer; nothing is called after it returns.
	Close()
}

// BalancerState is one complete set of a service's SubConns.
type BalancerState struct {
	SubConns []*SubConn
}

// Picker chooses the endpoint of one attempt. Pick runs on the caller's
// goroutine for a call's first attempt and on the client loop for
// failovers, concurrently from many goroutines: it must be safe for that,
// and must not block or allocate. A picker is never changed once
// installed; new state arrives as a new picker.
type Picker interface {
	Pick(info *PickInfo) (*SubConn, error)
}

// PickInfo describes the attempt a Picker chooses an endpoint for.
type PickInfo struct {
	Method   string
	MethodID uint32
	// Attempt is 0 for a call's first attempt and n for its n-th failover.
	Attempt int
	// Failed is the SubConn the previous attempt went to and failed on
	// (nil on a first attempt): a picker should avoid it when it can.
	Failed *SubConn
}

// ErrNoSubConnAvailable is what a Picker returns when it has nothing to
// pick from; the call fails with ErrNoEndpoints.
var ErrNoSubConnAvailable = errors.New("runtime: no endpoint available")
