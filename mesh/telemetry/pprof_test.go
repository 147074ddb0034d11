package telemetry

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/zerohop/zerohop/runtime"
)

const mBurn = "test.Svc/Burn"

//go:noinline
func burn(rounds int) byte {
	var sum [32]byte
	for i := 0; i < rounds; i++ {
		sum = sha256.Sum256(sum[:])
	}
	return sum[0]
}

// TestCPUProfileSplitsByMethod profiles a busy blocking handler through
// the admin endpoint's /debug/pprof/profile and checks that its samples
// carry the worker's pprof label zerohop_method=<method>, so a CPU
// profile splits by method (go tool pprof -tagfocus zerohop_method=...).
func TestCPUProfileSplitsByMethod(t *testing.T) {
	ts := startServer(t)
	var sink atomic.Uint64 // keeps burn's result alive
	ts.srv.HandleBlocking(mBurn, func(req *runtime.Request, resp *runtime.Response) {
		sink.Add(uint64(burn(4000))) // ~1-2 ms of CPU
	})
	_, ep := startAdmin(t, AdminConfig{}, Sources{Server: ts.srv})
	c := newRawClient(t, ts.srv.Addr())

	type result struct {
		code int
		body []byte
	}
	got := make(chan result, 1)
	go func() {
		// The profile covers the calls below: 1 s of wall time, during
		// which the calls burn CPU on a worker.
		code, body := get(t, ep, "/debug/pprof/profile?seconds=1")
		got <- result{code, body}
	}()
	var r result
	calls := 0
	for done := false; !done && calls < 5000; calls++ { // bounded
		c.call(mBurn, nil, nil)
		select {
		case r = <-got:
			done = true
		default:
		}
	}
	if r.body == nil {
		r = <-got
	}
	if r.code != http.StatusOK {
		t.Fatalf("/debug/pprof/profile: %d %s", r.code, r.body)
	}
	p, err := profile.Parse(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parsing the CPU profile: %v", err)
	}
	var labelled, inBurn, inBurnLabelled int64
	for _, s := range p.Sample {
		isBurn := false
		for _, loc := range s.Location {
			for _, line := range loc.Line {
				if line.Function != nil && line.Function.Name == "github.com/zerohop/zerohop/mesh/telemetry.burn" {
					isBurn = true
				}
			}
		}
		hasLabel := false
		for _, v := range s.Label["zerohop_method"] {
			if v == mBurn {
				hasLabel = true
			}
		}
		if hasLabel {
			labelled += s.Value[0]
		}
		if isBurn {
			inBurn += s.Value[0]
			if hasLabel {
				inBurnLabelled += s.Value[0]
			}
		}
	}
	t.Logf("%d calls; samples: %d in burn (%d of them labelled), %d labelled %s", calls, inBurn, inBurnLabelled, labelled, mBurn)
	if inBurn == 0 {
		t.Fatalf("no samples in the handler at all after %d calls", calls)
	}
	if inBurnLabelled != inBurn {
		t.Errorf("%d of %d samples in the handler lack the label zerohop_method=%s", inBurn-inBurnLabelled, inBurn, mBurn)
	}
}
