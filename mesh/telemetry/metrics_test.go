package telemetry

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/topo"
	"github.com/zerohop/zerohop/proto"
)

// TestMetricsCountCalls makes a known number of calls of each kind and
// checks that /metrics, parsed by Prometheus's own parser, says exactly
// that — from the runtime's counters, read at scrape time.
func TestMetricsCountCalls(t *testing.T) {
	ts := startServer(t)
	_, ep := startAdmin(t, AdminConfig{}, Sources{Server: ts.srv})
	c := newRawClient(t, ts.srv.Addr())
	const echoes, limited, panics = 37, 5, 3
	for i := 0; i < echoes; i++ {
		if f := c.call(mEcho, nil, []byte{0x0a, 1, 'x'}); f.Status() != proto.StatusOK {
			t.Fatalf("echo: status %v", f.Status())
		}
	}
	for i := 0; i < limited; i++ {
		if f := c.call(mLimited, nil, nil); f.Status() != proto.StatusRateLimited {
			t.Fatalf("limited: status %v", f.Status())
		}
	}
	for i := 0; i < panics; i++ {
		if f := c.call(mPanic, nil, nil); f.Status() != proto.StatusInternal {
			t.Fatalf("panic: status %v", f.Status())
		}
	}
	c.conn.Write([]byte("not gwir at all, dropped")) // a drop: bad magic
	// One socket, one loop, in order: this reply says the drop is counted.
	if f := c.call("test.Svc/Nope", nil, nil); f.Status() != proto.StatusUnknownMethod {
		t.Fatalf("unknown method: status %v", f.Status())
	}

	code, text := get(t, ep, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	fams := parseMetrics(t, text)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"zerohop_server_requests_total", map[string]string{"method": mEcho, "status": "OK"}, echoes},
		{"zerohop_server_requests_total", map[string]string{"method": mLimited, "status": "RATE_LIMITED"}, limited},
		{"zerohop_server_requests_total", map[string]string{"method": mPanic, "status": "INTERNAL"}, panics},
		{"zerohop_ratelimited_total", map[string]string{"method": mLimited}, limited},
		{"zerohop_ratelimited_total", map[string]string{"method": mEcho}, 0},
		{"zerohop_loop_requests_total", map[string]string{"queue": "0", "path": "udp"}, echoes + limited + panics + 1},
		{"zerohop_loop_error_answers_total", map[string]string{"queue": "0", "status": "INTERNAL"}, panics},
		{"zerohop_loop_error_answers_total", map[string]string{"queue": "0", "status": "UNKNOWN_METHOD"}, 1},
		{"zerohop_server_draining", nil, 0},
		{"zerohop_server_info", map[string]string{"backend": "uring", "addr": ts.srv.Addr().String()}, 1},
	} {
		if got := counterValue(t, fams, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// Every datagram the loop received is either a request or the drop.
	if rx := counterValue(t, fams, "zerohop_loop_rx_packets_total", map[string]string{"queue": "0"}); rx != echoes+limited+panics+2 {
		t.Errorf("rx = %v, want %d", rx, echoes+limited+panics+2)
	}
	var drops float64
	for _, m := range fams["zerohop_drops_total"].Metric {
		drops += m.Counter.GetValue()
	}
	if drops != 1 {
		t.Errorf("zerohop_drops_total sums to %v, want 1", drops)
	}

	h := sample(fams["zerohop_server_request_duration_seconds"], map[string]string{"method": mEcho}).GetHistogram()
	if h == nil {
		t.Fatal("no duration histogram for the echo method")
	}
	if h.GetSampleCount() != echoes {
		t.Errorf("histogram count %d, want %d", h.GetSampleCount(), echoes)
	}
	if h.GetSampleSum() <= 0 || math.IsNaN(h.GetSampleSum()) {
		t.Errorf("histogram sum %v, want > 0", h.GetSampleSum())
	}
	if len(h.Bucket) != len(DurationBuckets)+1 || !math.IsInf(h.Bucket[len(DurationBuckets)].GetUpperBound(), 1) {
		t.Fatalf("%d buckets, want %d and +Inf", len(h.Bucket), len(DurationBuckets))
	}
	if inf := h.Bucket[len(DurationBuckets)].GetCumulativeCount(); inf != echoes {
		t.Errorf("le=+Inf holds %d, want %d", inf, echoes)
	}
	prev := uint64(0)
	for i, b := range h.Bucket[:len(DurationBuckets)] {
		if b.GetUpperBound() != DurationBuckets[i] {
			t.Errorf("bucket %d bound %v, want %v", i, b.GetUpperBound(), DurationBuckets[i])
		}
		if b.GetCumulativeCount() < prev || b.GetCumulativeCount() > echoes {
			t.Errorf("bucket le=%v count %d: not cumulative within 0..%d", b.GetUpperBound(), b.GetCumulativeCount(), echoes)
		}
		prev = b.GetCumulativeCount()
	}
	// Loopback handlers take microseconds to milliseconds, never 100 s.
	if last := h.Bucket[len(DurationBuckets)-1].GetCumulativeCount(); last != echoes {
		t.Errorf("le=100 bucket holds %d of %d", last, echoes)
	}
	if !hasLine(text, "go_goroutines ") || !hasLine(text, "process_cpu_seconds_total ") {
		t.Error("Go and process collectors missing from /metrics")
	}

	// A second scrape after more calls moves the counter by exactly that.
	for i := 0; i < 4; i++ {
		c.call(mEcho, nil, nil)
	}
	_, text = get(t, ep, "/metrics")
	if got := counterValue(t, parseMetrics(t, text), "zerohop_server_requests_total", map[string]string{"method": mEcho, "status": "OK"}); got != echoes+4 {
		t.Errorf("after 4 more calls: %v, want %d", got, echoes+4)
	}
}

// TestPromtoolCheckMetrics runs Prometheus's own linter over /metrics.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		topo.SkipMissing(t, "promtool not installed (Debian package prometheus; scripts/test installs it)")
	}
	ts := startServer(t)
	tr := newTestTracer(t, newOTLPReceiver(t), 0)
	_, ep := startAdmin(t, AdminConfig{}, Sources{Server: ts.srv, Tracer: tr, XDP: fakeXDP{}, Iface: "eth9", Client: fakeClient{}})
	c := newRawClient(t, ts.srv.Addr())
	c.call(mEcho, nil, nil)
	c.call(mLimited, nil, nil)
	_, text := get(t, ep, "/metrics")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("promtool check metrics complains:\n%s", s)
	}
}

// TestHealthzDraining: /healthz says serving, then draining (503) while
// Shutdown waits for a blocking request, from the server's own state.
func TestHealthzDraining(t *testing.T) {
	ts := startServer(t)
	_, ep := startAdmin(t, AdminConfig{}, Sources{Server: ts.srv})
	if code, body := get(t, ep, "/healthz"); code != http.StatusOK || strings.TrimSpace(string(body)) != "serving" {
		t.Fatalf("/healthz before shutdown: %d %q", code, body)
	}
	c := newRawClient(t, ts.srv.Addr())
	f := c.send(mBlock, nil, nil)
	<-ts.entered // the handler runs: Shutdown must wait for it
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.srv.Shutdown(ctx)
	}()
	code := 0
	for i := 0; i < 500 && code != http.StatusServiceUnavailable; i++ { // bounded: ≤ 5 s
		var body []byte
		code, body = get(t, ep, "/healthz")
		if code == http.StatusServiceUnavailable && strings.TrimSpace(string(body)) != "draining" {
			t.Errorf("503 body %q, want draining", body)
		}
		if code != http.StatusServiceUnavailable {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("/healthz never said draining during Shutdown (last %d)", code)
	}
	_, text := get(t, ep, "/metrics")
	if d := counterValue(t, parseMetrics(t, text), "zerohop_server_draining", nil); d != 1 {
		t.Errorf("zerohop_server_draining = %v while draining", d)
	}
	close(ts.release)
	if r := c.reply(f.RequestID()); r.Status() != proto.StatusOK {
		t.Errorf("the in-flight blocking request got %v", r.Status())
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
