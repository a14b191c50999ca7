// Package tracectx carries W3C trace context (the traceparent header) from a
// Schedule call onto its task, so that every later step of the task joins
// the caller's trace.
package tracectx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// Format renders sc as a traceparent header value ("" when sc is invalid),
// as propagation.TraceContext would, without its allocations: it runs for
// every task.
func Format(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
	return string(b[:])
}

// Parse reads a traceparent header value; the result is invalid when s is.
// The common form (version 00, 55 characters) is read directly; anything
// else goes through propagation.TraceContext.
func Parse(s string) trace.SpanContext {
	if s == "" {
		return trace.SpanContext{}
	}
	if len(s) == 55 && s[:3] == "00-" && s[35] == '-' && s[52] == '-' {
		var tid trace.TraceID
		var sid trace.SpanID
		var flags [1]byte
		if lowerHex(s[3:35]) && lowerHex(s[36:52]) && lowerHex(s[53:55]) {
			_, _ = hex.Decode(tid[:], []byte(s[3:35]))
			_, _ = hex.Decode(sid[:], []byte(s[36:52]))
			_, _ = hex.Decode(flags[:], []byte(s[53:55]))
			if !tid.IsValid() || !sid.IsValid() {
				return trace.SpanContext{}
			}
			return trace.NewSpanContext(trace.SpanContextConfig{
				TraceID:    tid,
				SpanID:     sid,
				TraceFlags: trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom),
				Remote:     true,
			})
		}
	}
	ctx := propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": s})
	return trace.SpanContextFromContext(ctx)
}

// lowerHex reports whether s is lower-case hex digits only, as W3C trace
// context requires.
func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
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
