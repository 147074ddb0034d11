package policy_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/authz"
	"github.com/zerohop/zerohop/mesh/policy/breaker"
	"github.com/zerohop/zerohop/mesh/policy/deadline"
	"github.com/zerohop/zerohop/mesh/policy/ratelimit"
	"github.com/zerohop/zerohop/mesh/policy/shed"
	"github.com/zerohop/zerohop/proto"
)

var methods = []string{"shop.Cart/Get", "shop.Cart/Put", "shop.Pay/Charge"}

// serverChain is what a server's middleware would hold for one loop.
type serverChain struct {
	authz *authz.Engine
	limit *ratelimit.Loop
	shed  *shed.Loop
}

func newServerChain(b testing.TB) serverChain {
	e, err := authz.NewEngine(1, methods)
	if err != nil {
		b.Fatal(err)
	}
	spec, err := authz.Parse("bench.yaml", []byte(`default: deny
rules:
  - name: lab
    action: deny
    sources: [10.9.0.0/16]
    methods: ["Put*"]
  - name: mesh
    action: allow
    sources: [10.0.0.0/8]
`))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Load(spec); err != nil {
		b.Fatal(err)
	}
	l, err := ratelimit.New(ratelimit.Config{Loops: 1, Methods: methods, Rules: []ratelimit.Rule{
		{Method: "shop.Cart/*", Rate: 1e8, Burst: 100000}, // high enough never to refuse
	}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := shed.New(shed.Config{Loops: 1, CPU: func() int64 { return 300 }})
	if err != nil {
		b.Fatal(err)
	}
	return serverChain{authz: e, limit: l.Loop(0), shed: s.Loop(0)}
}

// check runs the server's checks on one request, in the order of the
// package doc, and returns the status it would answer.
func (c serverChain) check(now int64, method uint32, peer netip.Addr, caller []byte, budgetUs uint32, queueDelay time.Duration) (proto.Status, time.Duration) {
	if allow, _, _ := c.authz.Match(0, method, peer, caller, nil); !allow {
		return proto.StatusDenied, 0
	}
	if !deadline.Accept(deadline.FromBudget(now, budgetUs), now) {
		return proto.StatusDeadlineExceeded, 0
	}
	if ok, retry := c.limit.Allow(now, method, caller, peer); !ok {
		return proto.StatusRateLimited, retry
	}
	if ok, retry := c.shed.Allow(now, queueDelay); !ok {
		return proto.StatusOverloaded, retry
	}
	return proto.StatusOK, 0
}

// BenchmarkServerChain: authz, deadline, rate limit and shedder admitting
// one call, and the shedder's Done when it completes.
func BenchmarkServerChain(b *testing.B) {
	c := newServerChain(b)
	id := proto.MethodID("shop.Cart/Get")
	peer := netip.MustParseAddr("10.1.2.3")
	caller := []byte("web")
	b.ReportAllocs()
	now := int64(time.Hour)
	for b.Loop() {
		now += 1000
		if st, _ := c.check(now, id, peer, caller, 50000, 2*time.Microsecond); st != proto.StatusOK {
			b.Fatalf("refused: %v", st)
		}
		c.shed.Done(now+500, 500, 0)
	}
}

// BenchmarkClientChain: the deadline budget and the breaker for one
// attempt, and the breaker's mark when the answer comes.
func BenchmarkClientChain(b *testing.B) {
	reg := breaker.NewRegistry(breaker.Options{})
	br := reg.Get(netip.MustParseAddrPort("10.1.2.3:7000"), proto.MethodID("shop.Cart/Get"))
	b.ReportAllocs()
	now := int64(time.Hour)
	for b.Loop() {
		now += 1000
		d := now + int64(50*time.Millisecond)
		if _, ok := deadline.Budget(d, now); !ok {
			b.Fatal("expired")
		}
		if err := br.Allow(now); err != nil {
			b.Fatal(err)
		}
		br.Mark(now+500, breaker.Classify(proto.StatusOK, true))
		if !deadline.Retry(d, now+500, 5*time.Millisecond) {
			b.Fatal("no budget")
		}
	}
}

// A denied and a rate-limited request cost less than an admitted one and
// do not allocate either.
func BenchmarkServerChainRefusals(b *testing.B) {
	c := newServerChain(b)
	put := proto.MethodID("shop.Cart/Put")
	lab := netip.MustParseAddr("10.9.2.3")
	b.ReportAllocs()
	for b.Loop() {
		if st, _ := c.check(0, put, lab, nil, 50000, 0); st != proto.StatusDenied {
			b.Fatalf("status %v", st)
		}
	}
}
