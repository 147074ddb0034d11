package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// TraceConfig configures a Tracer.
type TraceConfig struct {
	// Endpoint is the OTLP/HTTP traces URL spans are exported to, e.g.
	// "http://127.0.0.1:4318/v1/traces". Exactly one of Endpoint and
	// Exporter is needed.
	Endpoint string
	// Exporter, instead of Endpoint, receives the spans (batched).
	Exporter sdktrace.SpanExporter
	// Service is the service.name resource attribute (default "zerohop").
	Service string
	// Ratio is the fraction (0..1) of requests that arrive without a trace
	// context which start a trace here. Requests with one follow their
	// caller's sampled flag (parent-based sampling), whatever Ratio says.
	// The zero value therefore traces only what callers trace.
	Ratio float64
	// RingSize is how many loop records each of the tracer's rings holds
	// (a power of two; default 1024). A sampled loop request finding its
	// ring full gets no span and is counted
	// (zerohop_trace_records_dropped_total).
	RingSize int
	// FlushInterval is how often loop records are turned into spans
	// (default 100 ms); BatchTimeout how long the SDK batches spans before
	// exporting them (default 1 s).
	FlushInterval, BatchTimeout time.Duration
}

// Tracer makes OpenTelemetry server spans for the requests it samples and
// exports them over OTLP/HTTP.
//
// Sampling is decided per request, before anything is recorded, by the
// rule of OpenTelemetry's ParentBased(TraceIDRatioBased(Ratio)): a request
// carrying a TRACE tag is sampled exactly when the caller's sampled flag is
// set; one without is sampled with probability Ratio (a fresh trace). The
// SDK's own sampler is AlwaysSample, as the decision has been made.
//
// Blocking handlers (HandleBlocking) get their span in the request's
// context (Request.Context, through Request.SetContext), so what they call
// is traced as its child. Loop handlers must not allocate: for a sampled
// request the middleware copies what a span needs (ids, times, method,
// status, peer, caller, tracestate) into a preallocated record of a
// lock-free ring, and a goroutine of the tracer turns records into spans
// every FlushInterval. An unsampled request costs a look at its extension
// block and, without a trace context and with Ratio > 0, one random number.
type Tracer struct {
	cfg      TraceConfig
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	bound    uint64 // Ratio as a threshold on 63 random bits
	rings    [numRings]*ring

	sampledLoop, sampledBlocking, dropped atomic.Uint64

	mu      sync.Mutex // serialises draining (the ticker and Flush)
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// numRings shards the loop records by queue, so loops rarely contend.
const numRings = 4

const (
	defaultRingSize      = 1024
	defaultFlushInterval = 100 * time.Millisecond
	defaultBatchTimeout  = time.Second
)

// TracerStats are the tracer's own counters.
type TracerStats struct {
	SampledLoop     uint64  `json:"sampled_loop"`
	SampledBlocking uint64  `json:"sampled_blocking"`
	Dropped         uint64  `json:"dropped"`
	Ratio           float64 `json:"ratio"`
}

// NewTracer makes a Tracer and starts its exporter and its record
// goroutine; Close stops them.
func NewTracer(cfg TraceConfig) (*Tracer, error) {
	if (cfg.Endpoint == "") == (cfg.Exporter == nil) {
		return nil, errors.New("telemetry: TraceConfig needs exactly one of Endpoint (an OTLP/HTTP URL) and Exporter")
	}
	if math.IsNaN(cfg.Ratio) || cfg.Ratio < 0 || cfg.Ratio > 1 {
		return nil, fmt.Errorf("telemetry: TraceConfig.Ratio %v: want a fraction from 0 to 1", cfg.Ratio)
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = defaultRingSize
	}
	if cfg.RingSize < 0 || cfg.RingSize&(cfg.RingSize-1) != 0 {
		return nil, fmt.Errorf("telemetry: TraceConfig.RingSize %d: want a power of two", cfg.RingSize)
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = defaultFlushInterval
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = defaultBatchTimeout
	}
	if cfg.Service == "" {
		cfg.Service = "zerohop"
	}
	exp := cfg.Exporter
	if exp == nil {
		var err error
		exp, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(cfg.Endpoint))
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP/HTTP exporter for %q: %w", cfg.Endpoint, err)
		}
	}
	res := resource.NewSchemaless(attribute.String("service.name", cfg.Service))
	t := &Tracer{cfg: cfg, stop: make(chan struct{}), stopped: make(chan struct{}),
		bound: uint64(cfg.Ratio * (1 << 63))}
	t.provider = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(cfg.BatchTimeout)))
	t.tracer = t.provider.Tracer("github.com/zerohop/zerohop/mesh/telemetry")
	for i := range t.rings {
		t.rings[i] = newRing(cfg.RingSize)
	}
	go t.run()
	return t, nil
}

// Stats returns the tracer's counters.
func (t *Tracer) Stats() TracerStats {
	return TracerStats{SampledLoop: t.sampledLoop.Load(), SampledBlocking: t.sampledBlocking.Load(),
		Dropped: t.dropped.Load(), Ratio: t.cfg.Ratio}
}

// Flush turns every loop record made so far into a span and exports every
// span ended so far.
func (t *Tracer) Flush(ctx context.Context) error {
	t.drain()
	return t.provider.ForceFlush(ctx)
}

// Close turns the last records into spans, exports them and stops the
// exporter. Requests served after Close are not traced.
func (t *Tracer) Close(ctx context.Context) error {
	var err error
	t.once.Do(func() {
		close(t.stop)
		<-t.stopped
		t.drain()
		err = t.provider.Shutdown(ctx)
	})
	return err
}

func (t *Tracer) run() {
	defer close(t.stopped)
	tick := time.NewTicker(t.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.drain()
		}
	}
}

func (t *Tracer) drain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.rings {
		r.drain(t.emit)
	}
}

// sample decides for one request (see Tracer).
func (t *Tracer) sample(tc proto.TraceContext, ok bool) bool {
	if ok {
		return tc.Sampled()
	}
	return t.bound != 0 && randUint64()>>1 < t.bound
}

// Middleware returns the server middleware that traces requests; install
// it with runtime.WithMiddleware, first, so its span covers the others.
func (t *Tracer) Middleware() runtime.Middleware {
	return func(m runtime.MethodInfo, next runtime.Handler) runtime.Handler {
		if m.Blocking {
			return &blockingTrace{t: t, name: m.Name, next: next}
		}
		return &loopTrace{t: t, next: next}
	}
}

// loopTrace is the middleware of a loop handler.
type loopTrace struct {
	t    *Tracer
	next runtime.Handler
}

func (h *loopTrace) ServeGWIR(req *runtime.Request, resp *runtime.Response) {
	tc, ok := req.Trace()
	if !h.t.sample(tc, ok) {
		h.next.ServeGWIR(req, resp)
		return
	}
	h.serveSampled(req, resp, tc, ok)
}

func (h *loopTrace) serveSampled(req *runtime.Request, resp *runtime.Response, tc proto.TraceContext, parent bool) {
	t := h.t
	t.sampledLoop.Add(1)
	r := t.rings[uint(req.Queue())%numRings]
	rec, pos := r.reserve()
	if rec == nil {
		t.dropped.Add(1)
		h.next.ServeGWIR(req, resp)
		return
	}
	rec.tc, rec.hasParent = tc, parent
	rec.method, rec.peer, rec.queue, rec.path = req.Method(), req.Peer(), int32(req.Queue()), req.Path()
	rec.oneway, rec.attempt = req.Oneway(), uint8(min(req.Attempt(), 255))
	rec.stateLen = uint8(copy(rec.state[:], req.TraceState()))
	rec.callerLen = uint8(copy(rec.caller[:], req.Caller()))
	rec.start = wallArrival(req)
	rec.panicked = true // until the handler returns
	defer func() {
		rec.end = time.Now()
		if rec.panicked {
			rec.status = proto.StatusInternal
		} else {
			rec.status = resp.Status()
		}
		r.publish(rec, pos)
	}()
	h.next.ServeGWIR(req, resp)
	rec.panicked = false
}

// emit turns one loop record into a span (on the tracer's goroutine).
func (t *Tracer) emit(r *record) {
	ctx := context.Background()
	if r.hasParent {
		ctx = trace.ContextWithRemoteSpanContext(ctx, remoteSpanContext(r.tc, r.state[:r.stateLen]))
	}
	attrs := spanAttributes(r.method, int(r.queue), r.path, r.peer, r.caller[:r.callerLen], int(r.attempt), r.oneway)
	sa := statusAttributes(r.status)
	attrs = append(attrs, sa[:]...)
	_, span := t.tracer.Start(ctx, r.method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(r.start), trace.WithAttributes(attrs...))
	setSpanStatus(span, r.status, r.panicked)
	span.End(trace.WithTimestamp(r.end))
}

// blockingTrace is the middleware of a blocking handler: it runs on the
// worker, where allocating is allowed, and uses the SDK directly.
type blockingTrace struct {
	t    *Tracer
	name string
	next runtime.Handler
}

func (h *blockingTrace) ServeGWIR(req *runtime.Request, resp *runtime.Response) {
	tc, ok := req.Trace()
	if !h.t.sample(tc, ok) {
		h.next.ServeGWIR(req, resp)
		return
	}
	h.serveSampled(req, resp, tc, ok)
}

func (h *blockingTrace) serveSampled(req *runtime.Request, resp *runtime.Response, tc proto.TraceContext, parent bool) {
	h.t.sampledBlocking.Add(1)
	ctx := req.Context()
	if parent {
		ctx = trace.ContextWithRemoteSpanContext(ctx, remoteSpanContext(tc, req.TraceState()))
	}
	attrs := spanAttributes(h.name, req.Queue(), req.Path(), req.Peer(), req.Caller(), req.Attempt(), req.Oneway())
	ctx, span := h.t.tracer.Start(ctx, h.name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(wallArrival(req)), trace.WithAttributes(attrs...))
	req.SetContext(ctx)
	panicked := true
	defer func() {
		status := resp.Status()
		if panicked {
			status = proto.StatusInternal
		}
		endSpan(span, status, panicked, time.Now())
	}()
	h.next.ServeGWIR(req, resp)
	panicked = false
}

func remoteSpanContext(tc proto.TraceContext, state []byte) trace.SpanContext {
	cfg := trace.SpanContextConfig{TraceID: tc.TraceID, SpanID: tc.SpanID, TraceFlags: trace.TraceFlags(tc.Flags), Remote: true}
	if len(state) > 0 {
		if ts, err := trace.ParseTraceState(string(state)); err == nil {
			cfg.TraceState = ts
		}
	}
	return trace.NewSpanContext(cfg)
}

// Span attribute keys. rpc.system and rpc.method follow OpenTelemetry's
// RPC semantic conventions (rpc.method holding the full method name, as
// their 1.37 revision has it); the rest are zerohop's.
const (
	attrRPCSystem  = "rpc.system"
	attrRPCMethod  = "rpc.method"
	attrStatusCode = "rpc.gwir.status_code"
	attrStatus     = "rpc.gwir.status"
	attrPeerAddr   = "network.peer.address"
	attrPeerPort   = "network.peer.port"
	attrQueue      = "zerohop.queue"
	attrPath       = "zerohop.path"
	attrCaller     = "zerohop.caller"
	attrAttempt    = "zerohop.attempt"
	attrOneway     = "zerohop.oneway"
	attrService    = "zerohop.service"
	attrAttempts   = "zerohop.attempts"
	attrError      = "zerohop.error"
)

func spanAttributes(method string, queue int, path runtime.Path, peer netip.AddrPort, caller []byte, attempt int, oneway bool) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 11)
	attrs = append(attrs,
		attribute.String(attrRPCSystem, "gwir"),
		attribute.String(attrRPCMethod, method),
		attribute.Int(attrQueue, queue),
		attribute.String(attrPath, path.String()),
		attribute.String(attrPeerAddr, peer.Addr().String()),
		attribute.Int(attrPeerPort, int(peer.Port())),
	)
	if len(caller) > 0 {
		attrs = append(attrs, attribute.String(attrCaller, string(caller)))
	}
	if attempt > 0 {
		attrs = append(attrs, attribute.Int(attrAttempt, attempt))
	}
	if oneway {
		attrs = append(attrs, attribute.Bool(attrOneway, true))
	}
	return attrs
}

func statusAttributes(status proto.Status) [2]attribute.KeyValue {
	return [2]attribute.KeyValue{attribute.Int(attrStatusCode, int(status)), attribute.String(attrStatus, status.String())}
}

func setSpanStatus(span trace.Span, status proto.Status, panicked bool) {
	if panicked {
		span.SetStatus(codes.Error, "handler panicked")
	} else if status != proto.StatusOK {
		span.SetStatus(codes.Error, status.String())
	}
}

func endSpan(span trace.Span, status proto.Status, panicked bool, end time.Time) {
	sa := statusAttributes(status)
	span.SetAttributes(sa[:]...)
	setSpanStatus(span, status, panicked)
	span.End(trace.WithTimestamp(end))
}

func randUint64() uint64 { return rand.Uint64() }

// Option installs the tracing middleware on a server:
// runtime.Listen(network, addr, tr.Option(), ...). Give it before other
// WithMiddleware options so its span covers theirs.
func (t *Tracer) Option() runtime.Option { return runtime.WithMiddleware(t.Middleware()) }

// wallArrival is the request's arrival on the current wall clock, which
// spans are exported in: Request.Arrival's own wall clock is the process
// start's plus the monotonic time since, off by any clock step since.
func wallArrival(req *runtime.Request) time.Time {
	now := time.Now()
	return now.Add(-now.Sub(req.Arrival()))
}
