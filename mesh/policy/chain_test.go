package policy_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/policy/ratelimit"
	"github.com/zerohop/zerohop/proto"
)

// The order of the package doc in action: calls the policy denies spend no
// tokens, expired calls spend none either, and the shedder only sees calls
// that got past the limiter.
func TestServerChainOrder(t *testing.T) {
	c := newServerChain(t)
	l, err := ratelimit.New(ratelimit.Config{Loops: 1, Methods: methods, Rules: []ratelimit.Rule{
		{Method: "shop.Cart/Put", Rate: 1, Burst: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.limit = l.Loop(0)
	put := proto.MethodID("shop.Cart/Put")
	lab, mesh := netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.1.0.1")
	now := int64(time.Hour)
	for range 10 {
		if st, _ := c.check(now, put, lab, nil, 1000, 0); st != proto.StatusDenied {
			t.Fatalf("lab Put: %v, want DENIED", st)
		}
		if st, _ := c.check(now, put, mesh, nil, 0, 0); st != proto.StatusDeadlineExceeded {
			t.Fatalf("expired Put: %v, want DEADLINE_EXCEEDED", st)
		}
	}
	for i := range 2 {
		if st, _ := c.check(now, put, mesh, nil, 1000, 0); st != proto.StatusOK {
			t.Fatalf("mesh Put %d: %v, want OK: the refused calls must not have spent the burst", i, st)
		}
	}
	st, retry := c.check(now, put, mesh, nil, 1000, 0)
	if st != proto.StatusRateLimited || retry != time.Second {
		t.Fatalf("third mesh Put: %v retry %v, want RATE_LIMITED after 1s", st, retry)
	}
	if s := c.shed.State(); s.Flying != 2 {
		t.Fatalf("the shedder holds %d calls, want the 2 admitted", s.Flying)
	}
}
