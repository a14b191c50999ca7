// Package tracectx carries W3C trace context (the traceparent header) from a
// Schedule call onto its task, so that every later step of the task joins
// the caller's trace.
package tracectx

import (
	"context"
	"crypto/rand"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var propagator = propagation.TraceContext{}

// FromRequest returns the traceparent to store on a task scheduled by this
// call: the active span of ctx if there is one, else the request's
// traceparent header, else a new root context (sampled) so that every task
// has a trace id.
func FromRequest(ctx context.Context, h http.Header) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() && h != nil {
		sc = trace.SpanContextFromContext(propagator.Extract(context.Background(), propagation.HeaderCarrier(h)))
	}
	if !sc.IsValid() {
		sc = newRoot()
	}
	return Format(sc)
}

// Format renders sc as a traceparent header value.
func Format(sc trace.SpanContext) string {
	carrier := propagation.MapCarrier{}
	propagator.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
	return carrier.Get("traceparent")
}

// Parse reads a traceparent header value; the result is invalid when s is.
func Parse(s string) trace.SpanContext {
	if s == "" {
		return trace.SpanContext{}
	}
	ctx := propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": s})
	return trace.SpanContextFromContext(ctx)
}

func newRoot() trace.SpanContext {
	var tid trace.TraceID
	var sid trace.SpanID
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     sid,
		TraceFlags: trace.FlagsSampled,
	})
}
