package telemetry

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// discardExporter drops spans: benchmarks measure making them, not a
// collector.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

func benchTracer(b *testing.B, ratio float64) *Tracer {
	tr, err := NewTracer(TraceConfig{Exporter: discardExporter{}, Ratio: ratio, FlushInterval: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Close(context.Background()) })
	return tr
}

// BenchmarkRoundTrip measures whole requests over loopback (a kernel UDP
// client, the io_uring backend) with telemetry off and on; allocs/op
// counts every goroutine of the process, the server's loop included.
//
//	go test -run '^$' -bench BenchmarkRoundTrip -benchtime 20000x -count 5 ./mesh/telemetry
func BenchmarkRoundTrip(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchRoundTrip(b, nil, false, 0) })
	b.Run("metrics", func(b *testing.B) { benchRoundTrip(b, nil, true, 0) })
	// Scraped every 10 ms: allocs/op then include the scrapes' own.
	b.Run("metrics-scraped", func(b *testing.B) { benchRoundTrip(b, nil, true, 10*time.Millisecond) })
	b.Run("trace-unsampled", func(b *testing.B) { benchRoundTrip(b, benchTracer(b, 0), false, 0) })
	b.Run("trace-1pct", func(b *testing.B) { benchRoundTrip(b, benchTracer(b, 0.01), false, 0) })
	b.Run("trace-all", func(b *testing.B) { benchRoundTrip(b, benchTracer(b, 1), false, 0) })
}

func benchRoundTrip(b *testing.B, tr *Tracer, admin bool, scrapeEvery time.Duration) {
	var opts []runtime.Option
	if tr != nil {
		opts = append(opts, tr.Option())
	}
	ts := startServer(b, opts...)
	if admin {
		_, ep := startAdmin(b, AdminConfig{}, Sources{Server: ts.srv, Tracer: tr})
		if scrapeEvery > 0 {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := ep.HTTPClient(5 * time.Second)
				defer c.CloseIdleConnections()
				tick := time.NewTicker(scrapeEvery)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if resp, err := c.Get("http://zerohop/metrics"); err == nil {
							resp.Body.Close()
						}
					}
				}
			}()
			b.Cleanup(func() { close(stop); wg.Wait() })
		}
	}
	c := newRawClient(b, ts.srv.Addr())
	payload := []byte{0x0a, 4, 'p', 'i', 'n', 'g'}
	for i := 0; i < 100; i++ { // warm the sockets and the first-use paths
		c.call(mEcho, nil, payload)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.call(mEcho, nil, payload)
	}
}

// BenchmarkMiddleware measures the tracing middleware alone, on the event
// loop, against a real request: one request's handler runs the wrapped
// handler b.N times. "sampled" includes turning every record into a span
// (drained every 256 requests, as the tracer's goroutine would).
//
//	go test -run '^$' -bench BenchmarkMiddleware -benchtime 1000000x ./mesh/telemetry
func BenchmarkMiddleware(b *testing.B) {
	for _, bc := range []struct {
		name   string
		ratio  float64
		trace  bool
		traced bool
	}{
		{"none", 0, false, false},
		{"no-trace-context", 0, true, false},
		{"unsampled-caller", 0, true, true},
		{"ratio-1pct", 0.01, true, false},
		{"sampled-all", 1, true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var tr *Tracer
			next := runtime.HandlerFunc(func(req *runtime.Request, resp *runtime.Response) { resp.Write(req.Payload()) })
			var h runtime.Handler = next
			if bc.trace {
				tr = benchTracer(b, bc.ratio)
				h = tr.Middleware()(runtime.MethodInfo{Name: mEcho, ID: proto.MethodID(mEcho)}, next)
			}
			srv, err := runtime.Listen("udp", "127.0.0.1:0", runtime.WithBackend(runtime.BackendUring), runtime.WithLogger(discardLogger()))
			if err != nil {
				b.Fatal(err)
			}
			n := b.N
			srv.Handle(mEcho, func(req *runtime.Request, resp *runtime.Response) {
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < n; i++ {
					resp.Reset()
					h.ServeGWIR(req, resp)
					if tr != nil && i&255 == 255 && bc.ratio == 1 {
						tr.drain()
					}
				}
				b.StopTimer()
			})
			if err := srv.Start(); err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown(context.Background())
			c := newRawClient(b, srv.Addr())
			var x proto.ExtBuilder
			if bc.traced {
				x.SetTrace(traceCtx(1, false))
			}
			c.send(mEcho, &x, []byte{0x0a, 4, 'p', 'i', 'n', 'g'})
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Minute))
			buf := make([]byte, 2048)
			if _, err := c.conn.Read(buf); err != nil {
				b.Fatal(err)
			}
		})
	}
}

var _ http.Handler = (*Admin)(nil)
