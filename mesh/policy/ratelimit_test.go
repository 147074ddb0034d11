package policy_test

import (
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/proto"
)

// The scenario against a real server: a limit of 1,000/s with a
// burst of 100 on one method, offered 5,000/s for 2 s by a kernel UDP
// client. The calls admitted are a count: within 10 % of rate·t + burst
// for the t the client actually took; every other call of the method is
// answered RATE_LIMITED with a RETRY_AFTER, and the other method, called
// at the same time, is never limited.
func TestRateLimitOnTheKernelPath(t *testing.T) {
	const (
		rate, burst = 1000, 100
		offered     = 5000 // calls per second of the limited method
		span        = 2 * time.Second
		tick        = time.Millisecond
		perTick     = offered * int(tick) / int(time.Second)
	)
	pol := newPolicy(t, policy.ServerConfig{Loops: 1})
	srv := startServer(t, nil, loopback().String(), pol)
	if _, err := pol.Load(mustParse(t, `limits:
  - name: echo
    method: zerohop.Echo/Echo
    rate: 1000
    burst: 100
`), "test"); err != nil {
		t.Fatal(err)
	}
	c := dial(t, nil, netipAddr(""), srv.Addr())
	k := collect(c)
	var id uint64
	sent := map[uint64]string{}
	start := time.Now()
	next := start
	for time.Since(start) < span {
		for range perTick {
			id++
			c.send(request(id, echo.EchoMethod, "", []byte{0x08, 0x01}))
			sent[id] = echo.EchoMethod
		}
		id++
		c.send(request(id, echo.SumMethod, "", []byte{0x08, 0x01}))
		sent[id] = echo.SumMethod
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	elapsed := time.Since(start)
	got := k.wait(len(sent))
	var accepted, limited, other, missing, bad int
	for i, m := range sent {
		r, ok := got[i]
		switch {
		case !ok:
			missing++
		case m == echo.SumMethod:
			if r.status != proto.StatusOK {
				bad++
			}
			other++
		case r.status == proto.StatusOK:
			accepted++
		case r.status == proto.StatusRateLimited:
			limited++
			if !r.hasRA || r.retry <= 0 || r.retry > time.Second/rate+time.Millisecond {
				t.Errorf("call %d: RATE_LIMITED with RETRY_AFTER %v (present %v), want (0, %v]", i, r.retry, r.hasRA, time.Second/rate)
			}
		default:
			t.Errorf("call %d: status %v", i, r.status)
		}
	}
	want := rate*elapsed.Seconds() + burst
	t.Logf("%.2fs: %d sent, %d accepted (rate·t + burst = %.0f), %d RATE_LIMITED, %d other-method calls, %d unanswered",
		elapsed.Seconds(), len(sent), accepted, want, limited, other, missing)
	if missing > 0 {
		t.Errorf("%d calls got no answer", missing)
	}
	if bad > 0 {
		t.Errorf("%d calls of the other method were not OK", bad)
	}
	if f := float64(accepted); f < 0.9*want || f > 1.1*want {
		t.Errorf("accepted %d, want within 10%% of %.0f", accepted, want)
	}
	// The limiter's own count agrees with the answers.
	st := pol.Stats()
	if len(st.Limits) != 1 || st.Limits[0].Allowed != uint64(accepted) || st.Limits[0].Limited != uint64(limited) {
		t.Errorf("limit stats %+v, want %d allowed and %d limited", st.Limits, accepted, limited)
	}
}
