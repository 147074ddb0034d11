package telemetry

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

// traceCtx makes a distinct caller trace context per n.
func traceCtx(n byte, sampled bool) proto.TraceContext {
	tc := proto.TraceContext{}
	for i := range tc.TraceID {
		tc.TraceID[i] = 0xA0 + n + byte(i)
	}
	for i := range tc.SpanID {
		tc.SpanID[i] = 0x10 + n + byte(i)
	}
	if sampled {
		tc.Flags = proto.TraceFlagSampled
	}
	return tc
}

func flush(t *testing.T, tr *Tracer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func byTrace(spans []*tracepb.Span) map[[16]byte][]*tracepb.Span {
	out := map[[16]byte][]*tracepb.Span{}
	for _, s := range spans {
		var id [16]byte
		copy(id[:], s.TraceId)
		out[id] = append(out[id], s)
	}
	return out
}

// TestServerSpansContinueCallersTrace sends requests with TRACE tags and
// decodes, from an in-process OTLP/HTTP receiver, the spans the server
// exported: one per sampled request, in the caller's trace, child of the
// caller's span, with method and status; none for unsampled requests.
func TestServerSpansContinueCallersTrace(t *testing.T) {
	rcv := newOTLPReceiver(t)
	tr := newTestTracer(t, rcv, 0)
	ts := startServer(t, tr.Option())
	c := newRawClient(t, ts.srv.Addr())

	type sent struct {
		method string
		tc     proto.TraceContext
		status proto.Status
	}
	var want []sent
	send := func(n byte, method string, sampled bool, wantStatus proto.Status) {
		var x proto.ExtBuilder
		tc := traceCtx(n, sampled)
		x.SetTrace(tc)
		x.SetTraceState([]byte("zh=test"))
		x.SetCaller([]byte("frontend"))
		f := c.call(method, &x, []byte{0x0a, 1, 'x'})
		if f.Status() != wantStatus {
			t.Fatalf("%s: status %v, want %v", method, f.Status(), wantStatus)
		}
		if sampled {
			want = append(want, sent{method, tc, wantStatus})
		}
	}
	send(1, mEcho, true, proto.StatusOK)
	send(2, mEcho, false, proto.StatusOK)
	send(3, mLimited, true, proto.StatusRateLimited)
	send(4, mPanic, true, proto.StatusInternal)
	send(5, mCtx, true, proto.StatusOK)
	send(6, mCtx, false, proto.StatusOK)
	c.call(mEcho, nil, nil) // no trace context, Ratio 0: no span
	seenSampled, seenUnsampled := <-ts.ctxSeen, <-ts.ctxSeen

	flush(t, tr)
	spans, res := rcv.take()
	if len(spans) != len(want) {
		for _, s := range spans {
			t.Logf("span %s trace %x", s.Name, s.TraceId)
		}
		t.Fatalf("%d spans exported, want %d (one per sampled request)", len(spans), len(want))
	}
	got := byTrace(spans)
	for _, w := range want {
		ss := got[w.tc.TraceID]
		if len(ss) != 1 {
			t.Errorf("%s: %d spans in the caller's trace %x, want 1", w.method, len(ss), w.tc.TraceID)
			continue
		}
		s := ss[0]
		if !bytes.Equal(s.ParentSpanId, w.tc.SpanID[:]) {
			t.Errorf("%s: parent span %x, want the caller's %x", w.method, s.ParentSpanId, w.tc.SpanID)
		}
		if s.Name != w.method || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("span %q kind %v, want %q SERVER", s.Name, s.Kind, w.method)
		}
		a := attrs(s)
		if a["rpc.method"] != w.method || a["rpc.system"] != "gwir" || a["zerohop.caller"] != "frontend" {
			t.Errorf("%s: attributes %v", w.method, a)
		}
		if a["rpc.gwir.status_code"] != int64(w.status) || a["rpc.gwir.status"] != w.status.String() {
			t.Errorf("%s: status attributes %v/%v, want %d/%s", w.method, a["rpc.gwir.status_code"], a["rpc.gwir.status"], w.status, w.status)
		}
		if isErr := s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR; isErr != (w.status != proto.StatusOK) {
			t.Errorf("%s: span status %v for GWIR status %v", w.method, s.GetStatus(), w.status)
		}
		if s.TraceState != "zh=test" {
			t.Errorf("%s: tracestate %q, want the caller's", w.method, s.TraceState)
		}
		if s.StartTimeUnixNano == 0 || s.EndTimeUnixNano < s.StartTimeUnixNano {
			t.Errorf("%s: times %d..%d", w.method, s.StartTimeUnixNano, s.EndTimeUnixNano)
		}
	}
	if res[0]["service.name"] != "telemetry-test" {
		t.Errorf("resource %v, want service.name telemetry-test", res[0])
	}
	// The blocking handler had its span in its context: the exported span.
	blocking := got[traceCtx(5, true).TraceID]
	if !seenSampled.valid || seenSampled.traceID != traceCtx(5, true).TraceID ||
		len(blocking) != 1 || !bytes.Equal(blocking[0].SpanId, seenSampled.spanID[:]) {
		t.Errorf("blocking handler's context held span %x/%x (valid %v), exported %v", seenSampled.traceID, seenSampled.spanID, seenSampled.valid, blocking)
	}
	if seenUnsampled.valid {
		t.Errorf("unsampled blocking request had a span in its context: %+v", seenUnsampled)
	}
	st := tr.Stats()
	if st.SampledLoop != 3 || st.SampledBlocking != 1 || st.Dropped != 0 {
		t.Errorf("tracer stats %+v, want 3 loop, 1 blocking, 0 dropped", st)
	}
}

// TestRatioStartsTraces: with Ratio 1 a request without a trace context
// starts a trace of its own (a root span).
func TestRatioStartsTraces(t *testing.T) {
	rcv := newOTLPReceiver(t)
	tr := newTestTracer(t, rcv, 1)
	ts := startServer(t, tr.Option())
	c := newRawClient(t, ts.srv.Addr())
	for i := 0; i < 3; i++ {
		c.call(mEcho, nil, nil)
	}
	var x proto.ExtBuilder
	x.SetTrace(traceCtx(9, false)) // the caller decided: not sampled
	c.call(mEcho, &x, nil)
	flush(t, tr)
	spans, _ := rcv.take()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3 roots (and none for the unsampled caller)", len(spans))
	}
	ids := map[string]bool{}
	for _, s := range spans {
		if len(s.ParentSpanId) != 0 || len(s.TraceId) != 16 || bytes.Equal(s.TraceId, make([]byte, 16)) {
			t.Errorf("root span: parent %x trace %x", s.ParentSpanId, s.TraceId)
		}
		ids[string(s.TraceId)] = true
	}
	if len(ids) != 3 {
		t.Errorf("%d distinct trace ids for 3 roots", len(ids))
	}
}

// TestClientAndServerSpans: the CallTracer hook the client engine is to
// call gives a client span whose context travels in TRACE, and the
// server's span is its child in the same trace.
func TestClientAndServerSpans(t *testing.T) {
	rcv := newOTLPReceiver(t)
	tr := newTestTracer(t, rcv, 0)
	ts := startServer(t, tr.Option())
	c := newRawClient(t, ts.srv.Addr())

	// The application's own span, as an instrumented caller has one.
	app := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer app.Shutdown(context.Background())
	ctx, parent := app.Tracer("app").Start(context.Background(), "handle-page")
	defer parent.End()

	callCtx, tc, state, ok := tr.StartCall(ctx, "test.Svc", mEcho)
	if !ok || !tc.Sampled() || tc.TraceID != parent.SpanContext().TraceID() || tc.SpanID == parent.SpanContext().SpanID() {
		t.Fatalf("StartCall: ok %v tc %+v; parent %v", ok, tc, parent.SpanContext())
	}
	var x proto.ExtBuilder
	x.SetTrace(tc)
	x.SetTraceState(state)
	f := c.call(mEcho, &x, nil)
	tr.EndCall(callCtx, &runtime.CallEnd{Service: "test.Svc", Method: mEcho, Status: f.Status(), Attempts: 1})
	flush(t, tr)
	spans, _ := rcv.take()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want a client and a server span", len(spans))
	}
	var client, server *tracepb.Span
	for _, s := range spans {
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		}
	}
	if client == nil || server == nil {
		t.Fatalf("kinds: %v, %v", spans[0].Kind, spans[1].Kind)
	}
	pid := parent.SpanContext().SpanID()
	tid := parent.SpanContext().TraceID()
	if !bytes.Equal(client.TraceId, tid[:]) || !bytes.Equal(server.TraceId, tid[:]) {
		t.Errorf("trace ids: client %x server %x, want %x", client.TraceId, server.TraceId, tid)
	}
	if !bytes.Equal(client.ParentSpanId, pid[:]) {
		t.Errorf("client span's parent %x, want the application's span %x", client.ParentSpanId, pid)
	}
	if !bytes.Equal(server.ParentSpanId, client.SpanId) {
		t.Errorf("server span's parent %x, want the client span %x", server.ParentSpanId, client.SpanId)
	}
	if a := attrs(client); a["rpc.method"] != mEcho || a["zerohop.service"] != "test.Svc" || a["rpc.gwir.status"] != "OK" || a["zerohop.attempts"] != int64(1) {
		t.Errorf("client span attributes %v", a)
	}

	// An unsampled caller's context is propagated as it is, so the server
	// samples nothing; and EndCall leaves the caller's span alone.
	uctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: [16]byte{1, 2, 3}, SpanID: [8]byte{4, 5, 6}}))
	uctx2, utc, _, ok := tr.StartCall(uctx, "", mEcho)
	if !ok || utc.Sampled() || utc.TraceID != [16]byte{1, 2, 3} || utc.SpanID != [8]byte{4, 5, 6} {
		t.Fatalf("unsampled StartCall: ok %v tc %+v", ok, utc)
	}
	x.Reset()
	x.SetTrace(utc)
	c.call(mEcho, &x, nil)
	tr.EndCall(uctx2, &runtime.CallEnd{Method: mEcho, Attempts: 1})
	if _, _, _, ok := tr.StartCall(context.Background(), "", mEcho); ok {
		t.Error("a call without a trace context, at Ratio 0, would send a TRACE")
	}
	flush(t, tr)
	if spans, _ := rcv.take(); len(spans) != 0 {
		t.Errorf("%d spans exported for an unsampled call", len(spans))
	}
}

// TestLoopRecordsDroppedWhenRingFull: a full ring drops the record (and
// counts it); the request is still served.
func TestLoopRecordsDroppedWhenRingFull(t *testing.T) {
	rcv := newOTLPReceiver(t)
	tr, err := NewTracer(TraceConfig{Endpoint: rcv.url(), RingSize: 2, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close(context.Background())
	ts := startServer(t, tr.Option())
	c := newRawClient(t, ts.srv.Addr())
	for i := byte(0); i < 5; i++ {
		var x proto.ExtBuilder
		x.SetTrace(traceCtx(i, true))
		if f := c.call(mEcho, &x, nil); f.Status() != proto.StatusOK {
			t.Fatalf("status %v", f.Status())
		}
	}
	if st := tr.Stats(); st.SampledLoop != 5 || st.Dropped != 3 {
		t.Errorf("stats %+v, want 5 sampled, 3 dropped (one queue, ring of 2)", st)
	}
	flush(t, tr)
	if spans, _ := rcv.take(); len(spans) != 2 {
		t.Errorf("%d spans, want the 2 the ring held", len(spans))
	}
}

// TestRingConcurrent: producers on several goroutines and one consumer
// hand over every record exactly once, in each producer's order, and a
// full ring refuses instead of blocking.
func TestRingConcurrent(t *testing.T) {
	const producers, each = 4, 20000
	r := newRing(64)
	var wg sync.WaitGroup
	dropped := make([]int, producers)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rec, pos := r.reserve()
				if rec == nil {
					dropped[p]++
					continue
				}
				rec.queue = int32(p)
				binary.BigEndian.PutUint64(rec.tc.TraceID[:8], uint64(i))
				r.publish(rec, pos)
			}
		}()
	}
	got := 0
	last := make([]int64, producers)
	for i := range last {
		last[i] = -1
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	check := func(rec *record) {
		p := rec.queue
		i := int64(binary.BigEndian.Uint64(rec.tc.TraceID[:8]))
		if i <= last[p] {
			t.Errorf("producer %d: record %d after %d", p, i, last[p])
		}
		last[p] = i
		got++
	}
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		r.drain(check)
	}
	r.drain(check)
	total := 0
	for _, d := range dropped {
		total += d
	}
	if got+total != producers*each {
		t.Errorf("consumed %d + dropped %d != produced %d", got, total, producers*each)
	}
	if got == 0 {
		t.Error("nothing consumed")
	}
}

// TestTraceConfigErrors: bad configuration names the field.
func TestTraceConfigErrors(t *testing.T) {
	for _, cfg := range []TraceConfig{{}, {Endpoint: "http://x/v1/traces", Ratio: 2}, {Endpoint: "http://x/v1/traces", RingSize: 3}} {
		if _, err := NewTracer(cfg); err == nil {
			t.Errorf("NewTracer(%+v) accepted", cfg)
		}
	}
}

var _ runtime.Handler = (*loopTrace)(nil)

// TestEngineCallsCarryTheTrace: the runtime's client engine, given the
// Tracer as its CallTracer, starts a client span per call and sends its
// context in the TRACE tag; the server's span is its child.
func TestEngineCallsCarryTheTrace(t *testing.T) {
	rcv := newOTLPReceiver(t)
	tr := newTestTracer(t, rcv, 0)
	ts := startServer(t, tr.Option())
	eng, err := runtime.NewEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	c, err := runtime.Dial("udp", ts.srv.Addr().String(), runtime.WithEngine(eng), runtime.WithCallTracer(tr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	app := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer app.Shutdown(context.Background())
	ctx, parent := app.Tracer("app").Start(context.Background(), "handle-page")
	defer parent.End()
	if _, err := c.Call(ctx, mEcho, []byte("\x0a\x01x"), nil); err != nil {
		t.Fatal(err)
	}
	// An untraced call (Ratio 0, no parent) sends no TRACE: no span.
	if _, err := c.Call(context.Background(), mEcho, nil, nil); err != nil {
		t.Fatal(err)
	}
	flush(t, tr)
	spans, _ := rcv.take()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the traced call's client and server spans", len(spans))
	}
	var client, server *tracepb.Span
	for _, s := range spans {
		switch s.Kind {
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		}
	}
	tid := parent.SpanContext().TraceID()
	if client == nil || server == nil || !bytes.Equal(client.TraceId, tid[:]) || !bytes.Equal(server.TraceId, tid[:]) ||
		!bytes.Equal(server.ParentSpanId, client.SpanId) {
		t.Fatalf("spans %v: want a client span of the application's trace with the server span as its child", spans)
	}
	if a := attrs(client); a["rpc.method"] != mEcho || a["rpc.gwir.status"] != "OK" || a["zerohop.attempts"] != int64(1) {
		t.Errorf("client span attributes %v", a)
	}
}
