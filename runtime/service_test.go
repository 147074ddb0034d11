package runtime

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fixedResolver is a test resolver: it hands over the endpoints it is
// given, now and on every Set.
type fixedResolver struct {
	mu  sync.Mutex
	eps []Endpoint
	cc  ResolverConn
}

func (r *fixedResolver) Build(service string, cc ResolverConn) (Resolver, error) {
	r.mu.Lock()
	r.cc = cc
	eps := append([]Endpoint(nil), r.eps...)
	r.mu.Unlock()
	go cc.UpdateState(ResolverState{Endpoints: eps})
	return r, nil
}

func (r *fixedResolver) Set(eps ...Endpoint) {
	r.mu.Lock()
	r.eps = eps
	cc := r.cc
	r.mu.Unlock()
	cc.UpdateState(ResolverState{Endpoints: eps})
}

func (r *fixedResolver) ResolveNow() {}
func (r *fixedResolver) Close()      {}

func endpointsOf(addrs ...netip.AddrPort) []Endpoint {
	eps := make([]Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = Endpoint{Addr: a}
	}
	return eps
}

// closedPort is a loopback UDP port nobody listens on.
func closedPort(t *testing.T) netip.AddrPort {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ap := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	conn.Close()
	return ap
}

func TestDialServiceRoundRobinAndUpdates(t *testing.T) {
	servers := []*gwirServer{startGWIRServer(t, serverConfig{}), startGWIRServer(t, serverConfig{}), startGWIRServer(t, serverConfig{})}
	r := &fixedResolver{eps: endpointsOf(servers[0].addr, servers[1].addr, servers[2].addr)}
	// A long timeout keeps attempts from timing out (and failing over) on
	// a busy machine, so each call reaches exactly one server.
	c, err := DialService("test.Echo", WithEngine(testEngine(t)), WithResolver(r),
		WithRetransmission(time.Second, time.Second, 0), WithMinRTO(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	const calls = 3000
	for i := range calls {
		p := payloadFor(i)
		if rep, err := c.Call(ctx, methodEcho, p, nil); err != nil || !bytes.Equal(rep.Payload, p) {
			t.Fatalf("call %d: %x, %v", i, rep.Payload, err)
		}
	}
	for i, s := range servers {
		if n := s.requests(); n != calls/3 {
			t.Errorf("server %d got %d calls, want %d of %d (round robin)", i, n, calls/3, calls)
		}
	}
	// The resolver drops a server: no call reaches it any more.
	r.Set(endpointsOf(servers[0].addr, servers[1].addr)...)
	before := servers[2].requests()
	for i := range 100 {
		if _, err := c.Call(ctx, methodEcho, payloadFor(i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := servers[2].requests() - before; n != 0 {
		t.Errorf("a removed endpoint got %d calls", n)
	}
	if n := len(c.Endpoints()); n != 2 {
		t.Errorf("%d SubConns after the update, want 2", n)
	}
}

// A failed attempt — ICMP unreachable from a dead server, OVERLOADED from
// a busy one — is sent again to another endpoint; every call succeeds.
func TestDialServiceFailover(t *testing.T) {
	good := startGWIRServer(t, serverConfig{})
	busy := startGWIRServer(t, serverConfig{overloaded: true})
	dead := closedPort(t)
	r := &fixedResolver{eps: endpointsOf(good.addr, busy.addr, dead)}
	c, err := DialService("test.Echo", WithEngine(testEngine(t)), WithResolver(r), WithRetryBudget(5, 10),
		WithRetransmission(20*time.Millisecond, time.Second, 20))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	for i := range 300 {
		p := payloadFor(i)
		if rep, err := c.Call(ctx, methodEcho, p, nil); err != nil || !bytes.Equal(rep.Payload, p) {
			t.Fatalf("call %d: %x, %v", i, rep.Payload, err)
		}
	}
	if f := c.svc.failovers.Load(); f < 150 {
		t.Errorf("%d failovers for 300 calls over 3 endpoints of which 2 refuse", f)
	}
	if n := good.requests(); n != 300 {
		t.Errorf("the good server answered %d of 300 calls", n)
	}
}

// When every endpoint fails, the retry budget stops the failovers: calls
// fail, and the copies sent stay within the budget, not attempts × calls.
func TestDialServiceRetryBudget(t *testing.T) {
	r := &fixedResolver{eps: endpointsOf(closedPort(t), closedPort(t), closedPort(t))}
	c, err := DialService("test.Echo", WithEngine(testEngine(t)), WithResolver(r), WithRetryBudget(0.2, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testContext(t)
	const calls = 200
	failed := 0
	for i := range calls {
		if _, err := c.Call(ctx, methodEcho, payloadFor(i), nil); err != nil {
			failed++
		}
	}
	if failed != calls {
		t.Fatalf("%d of %d calls to dead endpoints failed", failed, calls)
	}
	// Budget: 0.2 × 200 + 1/s × 10 s = 50 retries at most.
	if f := c.svc.failovers.Load(); f > 50 {
		t.Errorf("%d failovers, over the budget of 50", f)
	}
}

func TestDialServiceErrors(t *testing.T) {
	if _, err := DialService("x"); err == nil {
		t.Error("DialService without a resolver succeeded")
	}
	if _, err := DialService("", WithResolver(&fixedResolver{})); err == nil {
		t.Error("DialService with no name succeeded")
	}
	// No endpoints: calls fail fast with ErrNoEndpoints.
	c, err := DialService("test.None", WithEngine(testEngine(t)), WithResolver(&fixedResolver{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, methodEcho, nil, nil); !errors.Is(err, ErrNoEndpoints) {
		t.Errorf("call with no endpoints: %v", err)
	}
}
