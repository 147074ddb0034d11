package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
)

var _ runtime.CallTracer = (*Tracer)(nil)

// clientSpanKey marks a context holding a client span this tracer started,
// so EndCall never ends a span of the caller's.
type clientSpanKey struct{}

type clientSpan struct {
	span  trace.Span
	state []byte
}

// StartCall implements runtime.CallTracer. The decision follows the server side's
// rule: a caller's context with a sampled span gets a child client span;
// with an unsampled one the call propagates it unchanged (flags 0, so the
// server does not sample either); with none, a new trace starts with
// probability Ratio and otherwise no TRACE is sent.
func (t *Tracer) StartCall(ctx context.Context, service, method string) (context.Context, proto.TraceContext, []byte, bool) {
	parent := trace.SpanContextFromContext(ctx)
	switch {
	case parent.IsValid() && !parent.IsSampled():
		tc := proto.TraceContext{TraceID: parent.TraceID(), SpanID: parent.SpanID(), Flags: byte(parent.TraceFlags())}
		var state []byte
		if parent.TraceState().Len() > 0 {
			state = []byte(parent.TraceState().String())
		}
		return ctx, tc, state, true
	case !parent.IsValid() && (t.bound == 0 || rand63() >= t.bound):
		return ctx, proto.TraceContext{}, nil, false
	}
	attrs := []attribute.KeyValue{attribute.String(attrRPCSystem, "gwir"), attribute.String(attrRPCMethod, method)}
	if service != "" {
		attrs = append(attrs, attribute.String(attrService, service))
	}
	ctx, span := t.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	sc := span.SpanContext()
	cs := &clientSpan{span: span}
	if sc.TraceState().Len() > 0 {
		cs.state = []byte(sc.TraceState().String())
	}
	ctx = context.WithValue(ctx, clientSpanKey{}, cs)
	return ctx, proto.TraceContext{TraceID: sc.TraceID(), SpanID: sc.SpanID(), Flags: byte(sc.TraceFlags())}, cs.state, true
}

// EndCall implements runtime.CallTracer.
func (t *Tracer) EndCall(ctx context.Context, end *runtime.CallEnd) {
	cs, _ := ctx.Value(clientSpanKey{}).(*clientSpan)
	if cs == nil {
		return
	}
	status, err, attempts := end.Status, end.Err, end.Attempts
	cs.span.SetAttributes(attribute.Int(attrAttempts, attempts))
	switch {
	case err != nil && status == proto.StatusOK:
		// No answer at all.
		cs.span.SetAttributes(attribute.String(attrError, err.Error()))
		cs.span.SetStatus(codes.Error, err.Error())
	default:
		cs.span.SetAttributes(attribute.Int(attrStatusCode, int(status)), attribute.String(attrStatus, status.String()))
		if status != proto.StatusOK {
			cs.span.SetStatus(codes.Error, status.String())
		}
	}
	cs.span.End()
}

func rand63() uint64 { return randUint64() >> 1 }
