package policy_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerohop/zerohop/examples/echo"
	"github.com/zerohop/zerohop/mesh/policy"
	"github.com/zerohop/zerohop/mesh/policy/breaker"
	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// TestBreakerEndToEnd: a server that answers OVERLOADED to everything sees
// the client's send rate fall to the SRE formula's share — the breaker
// drops the rest locally with ErrBreakerOpen —, and once it heals the
// calls get through again; OVERLOADED answers are answers, so nothing is
// retransmitted (no retry storm). Counts are asserted; how fast things
// moved is logged.
func TestBreakerEndToEnd(t *testing.T) {
	var sick atomic.Bool
	var reached atomic.Int64
	refuse := func(m runtime.MethodInfo, next runtime.Handler) runtime.Handler {
		return runtime.HandlerFunc(func(req *runtime.Request, resp *runtime.Response) {
			reached.Add(1)
			if sick.Load() {
				resp.Error(proto.StatusOverloaded, "sick")
				resp.SetRetryAfter(100 * time.Millisecond)
				return
			}
			next.ServeGWIR(req, resp)
		})
	}
	srv, err := runtime.Listen("udp", "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring),
		runtime.WithLogger(quietLogger()), runtime.WithAdmission(refuse))
	if err != nil {
		t.Fatal(err)
	}
	echo.Register(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	eng, err := runtime.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	start := time.Now()
	clock := func() int64 { return int64(time.Since(start)) }
	pc := policy.NewClient(policy.ClientConfig{Now: clock})
	c, err := runtime.Dial("udp", srv.Addr().String(), runtime.WithEngine(eng), runtime.WithInterceptors(pc.Interceptors()...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	payload := []byte("\x0a\x02hi")

	// calls offers n calls, one every gap, and counts what happened; last
	// counts the local drops among the last 200.
	calls := func(n int, gap time.Duration) (ok, refused, dropped, last int) {
		for i := range n {
			_, err := c.Call(ctx, echo.EchoMethod, payload, nil)
			switch st, answered := runtime.StatusOf(err); {
			case err == nil:
				ok++
			case errors.Is(err, breaker.ErrBreakerOpen):
				dropped++
				if i >= n-200 {
					last++
				}
			case answered && st == proto.StatusOverloaded:
				refused++
			default:
				t.Fatalf("unexpected error: %v", err)
			}
			time.Sleep(gap)
		}
		return ok, refused, dropped, last
	}

	if ok, _, _, _ := calls(200, 0); ok != 200 {
		t.Fatalf("healthy: %d of 200 calls succeeded", ok)
	}
	sick.Store(true)
	before := reached.Load()
	// Two seconds of sickness at ~500 calls/s offered.
	ok, refused, dropped, last := calls(1000, 2*time.Millisecond)
	sent := reached.Load() - before
	br := pc.Breakers().Get(srv.Addr(), proto.MethodID(echo.EchoMethod))
	want := br.DropProbability(clock())
	t.Logf("sick: offered 1000, reached the server %d (answered OVERLOADED %d), dropped locally %d (%d of the last 200; the formula says %.2f now)",
		sent, refused, dropped, last, want)
	if ok != 0 || refused+dropped != 1000 || int(sent) < refused {
		t.Fatalf("sick server: %d ok, %d refused, %d dropped, %d reached it", ok, refused, dropped, sent)
	}
	// The SRE formula, with the healthy phase's 200 accepts still in the
	// window: p = (requests − 1.5·accepts)/(requests + 1), 0.75 after
	// 1,200 requests. The share dropped at the end must follow it.
	if got := float64(last) / 200; got < want-0.15 || got > want+0.15 {
		t.Errorf("dropped %.2f of the last 200 calls, the formula says %.2f", got, want)
	}
	if want < 0.5 {
		t.Errorf("drop probability %.2f after 1,000 refusals", want)
	}

	sick.Store(false)
	healed := time.Now()
	var recovered time.Duration
	window := make([]bool, 0, 100)
	for i := 0; i < 20000 && recovered == 0; i++ {
		_, err := c.Call(ctx, echo.EchoMethod, payload, nil)
		if err != nil && !errors.Is(err, breaker.ErrBreakerOpen) {
			t.Fatalf("healed server: %v", err)
		}
		window = append(window, err == nil)
		if len(window) > 100 {
			window = window[1:]
		}
		good := 0
		for _, w := range window {
			if w {
				good++
			}
		}
		if len(window) == 100 && good >= 90 {
			recovered = time.Since(healed)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("recovered to ≥ 90 %% of calls through within %v of healing (issue 13 asks ≤ 2 s)", recovered)
	if recovered == 0 {
		t.Fatal("the breaker never let the calls through again after the server healed")
	}
	// OVERLOADED answers are answers: nothing is resent because of them
	// (a copy may still go out when an answer is slower than the
	// retransmission timeout on a busy machine; a retry storm would be one
	// per refusal).
	if st := c.Stats(); st.Retransmits > uint64(refused)/2 {
		t.Errorf("%d retransmissions for %d refused calls", st.Retransmits, refused)
	}
}
