package policy_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/breaker"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// fakeClient drives the client chain the way the client engine will: for
// each call, every interceptor's Before in order, the attempt if all let
// it go, then every After.
type fakeClient struct {
	chain []runtime.Interceptor
}

// attempt returns the error that refused the attempt, or nil once it was
// "sent" and answered with result.
func (f fakeClient) attempt(a *runtime.Attempt, result runtime.AttemptResult) error {
	return f.attemptP(a, &result)
}

func (f fakeClient) attemptP(a *runtime.Attempt, result *runtime.AttemptResult) error {
	for _, ic := range f.chain {
		if err := ic.Before(a); err != nil {
			return err
		}
	}
	for _, ic := range f.chain {
		ic.After(a, result)
	}
	return nil
}

// An endpoint that answers OVERLOADED to every call: the breaker's share
// of calls let through falls to what the SRE formula gives, dropped calls
// fail with ErrBreakerOpen without being sent, another endpoint and another
// method are not affected, and once the endpoint heals the calls are back
// within 2 s. Application statuses count for the endpoint, and an attempt
// the caller abandoned counts for nothing.
func TestBreakerInterceptor(t *testing.T) {
	now := int64(time.Hour)
	c := policy.NewClient(policy.ClientConfig{Now: func() int64 { return now }})
	f := fakeClient{c.Interceptors()}
	sick := runtime.Attempt{Method: "shop.Cart/Get", MethodID: proto.MethodID("shop.Cart/Get"), Endpoint: netip.MustParseAddrPort("10.0.0.1:7000")}
	other := sick
	other.MethodID, other.Method = proto.MethodID("shop.Cart/Put"), "shop.Cart/Put"
	healthy := sick
	healthy.Endpoint = netip.MustParseAddrPort("10.0.0.2:7000")
	overloaded := runtime.AttemptResult{Answered: true, Status: proto.StatusOverloaded, RetryAfter: 100 * time.Millisecond}
	ok := runtime.AttemptResult{Answered: true, Status: proto.StatusOK}
	const perSec = 1000
	step := int64(time.Second / perSec)
	sent := func(a *runtime.Attempt, r runtime.AttemptResult, span time.Duration) (n, calls int) {
		for end := now + int64(span); now < end; now += step {
			calls++
			err := f.attempt(a, r)
			switch {
			case err == nil:
				n++
			case !errors.Is(err, breaker.ErrBreakerOpen):
				t.Fatalf("attempt refused with %v", err)
			}
			if err := f.attempt(&healthy, ok); err != nil {
				t.Fatalf("the healthy endpoint's call was refused: %v", err)
			}
		}
		return n, calls
	}
	// Ten seconds of refusals fill the window: with no accepts the formula
	// drops all but the forced probes (one a second).
	sent(&sick, overloaded, 10*time.Second)
	n, calls := sent(&sick, overloaded, 2*time.Second)
	if n > 4 {
		t.Fatalf("%d of %d calls let through to an endpoint refusing everything, want about the forced probes", n, calls)
	}
	if err := f.attempt(&other, ok); err != nil {
		t.Fatalf("another method of the sick endpoint: %v", err)
	}
	// Healed: within 2 s nearly every call goes through again.
	sent(&sick, ok, 2*time.Second)
	n, calls = sent(&sick, ok, 500*time.Millisecond)
	if n < calls*9/10 {
		t.Fatalf("after healing 2 s ago, %d of %d calls let through", n, calls)
	}
	t.Logf("breaker recovered: %d of %d calls sent in the 500 ms after 2 s of health", n, calls)
	// An application status is an answer: it keeps the breaker closed.
	app := healthy
	app.Endpoint = netip.MustParseAddrPort("10.0.0.3:7000")
	n, calls = sent(&app, runtime.AttemptResult{Answered: true, Status: proto.StatusApplication + 3}, 5*time.Second)
	if n != calls {
		t.Fatalf("application errors opened the breaker: %d of %d sent", n, calls)
	}
	// Abandoned attempts are not marked.
	gone := healthy
	gone.Endpoint = netip.MustParseAddrPort("10.0.0.4:7000")
	sent(&gone, runtime.AttemptResult{Err: context.Canceled}, time.Second)
	if cnt := c.Breakers().Get(gone.Endpoint, gone.MethodID).Counts(now); cnt.Requests() != 0 {
		t.Fatalf("abandoned attempts were counted: %+v", cnt)
	}
	// Timeouts count against the endpoint.
	lost := healthy
	lost.Endpoint = netip.MustParseAddrPort("10.0.0.5:7000")
	sent(&lost, runtime.AttemptResult{Err: runtime.ErrNoReply}, time.Second)
	if cnt := c.Breakers().Get(lost.Endpoint, lost.MethodID).Counts(now); cnt.Failures == 0 {
		t.Fatalf("timeouts were not counted as failures: %+v", cnt)
	}
}

// An attempt whose call's deadline has passed is refused before it is
// sent, with an error that is a context.DeadlineExceeded.
func TestDeadlineInterceptor(t *testing.T) {
	f := fakeClient{policy.NewClient(policy.ClientConfig{}).Interceptors()}
	a := runtime.Attempt{Method: "a.B/C", MethodID: proto.MethodID("a.B/C"), Endpoint: netip.MustParseAddrPort("10.0.0.1:1"),
		Deadline: time.Now().Add(-time.Millisecond)}
	if err := f.attempt(&a, runtime.AttemptResult{Answered: true}); !errors.Is(err, policy.ErrDeadline) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired attempt: %v", err)
	}
	a.Deadline = time.Now().Add(time.Hour)
	if err := f.attempt(&a, runtime.AttemptResult{Answered: true}); err != nil {
		t.Fatalf("attempt with an hour left: %v", err)
	}
	a.Deadline = time.Time{}
	if err := f.attempt(&a, runtime.AttemptResult{Answered: true}); err != nil {
		t.Fatalf("attempt without a deadline: %v", err)
	}
}

func BenchmarkClientInterceptors(b *testing.B) {
	f := fakeClient{policy.NewClient(policy.ClientConfig{}).Interceptors()}
	a := runtime.Attempt{Method: "a.B/C", MethodID: proto.MethodID("a.B/C"), Endpoint: netip.MustParseAddrPort("10.0.0.1:1"),
		Deadline: time.Now().Add(time.Hour)}
	r := runtime.AttemptResult{Answered: true}
	b.ReportAllocs()
	for b.Loop() {
		if err := f.attemptP(&a, &r); err != nil {
			b.Fatal(err)
		}
	}
}
