package telemetry

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/bpf"
	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// fakeXDP stands for an interface's maps in tests that have no XDP
// program attached (the real maps are tested in xdp_test.go).
type fakeXDP struct{ fail bool }

func (f fakeXDP) Counters() (bpf.Counters, error) {
	if f.fail {
		return bpf.Counters{}, errors.New("maps gone")
	}
	return bpf.Counters{Seen: 100, Redirected: 60, Passed: 35, ACLDropped: 4, LossDropped: 1, Malformed: 2, NoSocket: 3,
		Stale: 4, Fragment: 5, Oversize: 6}, nil
}

func (fakeXDP) ACLRules() ([]bpf.ACLRule, error) {
	return []bpf.ACLRule{{Source: netip.MustParsePrefix("10.0.0.0/8"), Port: 9000, Action: bpf.Deny, Hits: 4},
		{Source: netip.MustParsePrefix("::/0"), Action: bpf.Allow, Hits: 7}}, nil
}

func (fakeXDP) Services() ([]bpf.Service, error) {
	return []bpf.Service{{Port: 9000, ID: 1, Slot: 0, PID: 42}, {Port: 9001, Addr: netip.MustParseAddr("10.1.2.3"), Stale: true}}, nil
}

func (fakeXDP) Slots() ([]bpf.SlotInfo, error) {
	return []bpf.SlotInfo{{Slot: 0, PID: 42, Queues: []int{0, 1}}, {Slot: 3, PID: 7, Stale: true}}, nil
}

// fixedDist is a Distribution with n values of d each.
type fixedDist struct {
	n uint64
	d time.Duration
}

func (f fixedDist) Count() uint64      { return f.n }
func (f fixedDist) Sum() time.Duration { return time.Duration(f.n) * f.d }
func (f fixedDist) CountBelow(d time.Duration) uint64 {
	if f.d < d {
		return f.n
	}
	return 0
}
func (f fixedDist) Quantile(float64) time.Duration { return f.d }

// fakeClient is a client source covering everything ClientStats can
// hold: what the mesh's client layers are to report over the engine's.
type fakeClient struct{}

func (fakeClient) ClientCoverage() ClientCoverage {
	return ClientCoverage{Methods: true, State: true, Breaker: true, Transport: true}
}

func (fakeClient) ClientStats() ClientStats {
	return ClientStats{
		Methods: []ClientMethodStats{{Service: "pkg.Users", Method: "pkg.Users/Get",
			Statuses: map[proto.Status]uint64{proto.StatusOK: 90, proto.StatusOverloaded: 3},
			Failures: map[string]uint64{FailureNoReply: 2}, Attempts: 99, Latency: fixedDist{95, 300 * time.Microsecond}}},
		Endpoints: []EndpointStats{
			{Service: "pkg.Users", Addr: netip.MustParseAddrPort("10.0.0.1:9000"), State: EndpointServing, InFlight: 3,
				Transport: runtime.ClientStats{Requests: 97, Retransmits: 2, Replies: 95, Timeouts: 2, Duplicates: 1, InFlight: 3,
					SRTT: 250 * time.Microsecond}},
			{Service: "pkg.Users", Addr: netip.MustParseAddrPort("10.0.0.2:9000"), State: EndpointEjected, BreakerDrop: 0.25},
		},
	}
}

func newTestTracer(t testing.TB, r *otlpReceiver, ratio float64) *Tracer {
	t.Helper()
	tr, err := NewTracer(TraceConfig{Endpoint: r.url(), Ratio: ratio, Service: "telemetry-test",
		FlushInterval: 20 * time.Millisecond, BatchTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewTracer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr.Close(ctx)
	})
	return tr
}

// fakeSessions is a session table with one server session and a refusal.
type fakeSessions struct{}

func (fakeSessions) Stats(now time.Time) identity.TableStats {
	st := identity.TableStats{Handshakes: 1, Refusals: 1, Sessions: []identity.SessionStats{{LocalID: 0x100001, RemoteID: 7,
		Role: identity.RoleServer, Peer: "spiffe://test.zerohop/ns/shop/sa/web", PeerAddr: netip.MustParseAddr("10.0.0.2"),
		Suite: identity.SuiteAES128GCM, Established: now.Add(-time.Minute), Expires: now.Add(time.Hour),
		SendKeyAge: time.Minute, RecvKeyAge: 30 * time.Second, Sealed: 10, Opened: 11, Replays: 1}}}
	st.Refused[identity.ReasonReplay] = 1
	return st
}
