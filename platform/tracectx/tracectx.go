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
	encode(&b, sc)
	return string(b[:])
}

// FormatReuse is Format(sc), but s itself when s is that text already:
// no new string (an executor passes a task's stored traceparent on to
// its module when it starts no span of its own).
func FormatReuse(sc trace.SpanContext, s string) string {
	if !sc.IsValid() {
		return ""
	}
	var b [55]byte
	encode(&b, sc)
	if string(b[:]) == s {
		return s
	}
	return string(b[:])
}

func encode(b *[55]byte, sc trace.SpanContext) {
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
}

// Parse reads a traceparent header value; the result is invalid when s is.
// The common form (version 00, 55 characters) is read directly; anything
// else goes through propagation.TraceContext.
func Parse(s string) trace.SpanContext {
	if s == "" {
		return trace.SpanContext{}
	}
	if sc, ok := parse00(s); ok {
		return sc
	}
	ctx := propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": s})
	return trace.SpanContextFromContext(ctx)
}

// TraceID is the trace id of traceparent s as lower-case hex (as
// trace.TraceID's String), "" when s is invalid. The common form's is a
// part of s, not a new string.
func TraceID(s string) string {
	if sc, ok := parse00(s); ok {
		if !sc.IsValid() {
			return ""
		}
		return s[3:35] // lower-case hex, as parse00 checked
	}
	if sc := Parse(s); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// parse00 reads the common form of a traceparent: version 00, lower-case
// hex, 55 characters. ok is false when s is not in that form (the
// propagator decides); the span context is invalid when its ids are zero.
func parse00(s string) (_ trace.SpanContext, ok bool) {
	if len(s) != 55 || s[:3] != "00-" || s[35] != '-' || s[52] != '-' {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !decodeLowerHex(tid[:], s[3:35]) || !decodeLowerHex(sid[:], s[36:52]) || !decodeLowerHex(flags[:], s[53:55]) {
		return trace.SpanContext{}, false
	}
	if !tid.IsValid() || !sid.IsValid() || flags[0] > 3 { // version 00 reserves the other flag bits
		return trace.SpanContext{}, true
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     sid,
		TraceFlags: trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom),
		Remote:     true,
	}), true
}

// decodeLowerHex decodes s (2·len(dst) characters) into dst in one pass
// and reports whether s is lower-case hex digits only, as W3C trace
// context requires.
func decodeLowerHex(dst []byte, s string) bool {
	for i := range dst {
		hi, lo := hexValue[s[2*i]], hexValue[s[2*i+1]]
		if hi|lo > 0xf {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

// hexValue is the value of a lower-case hex digit, 0xff for any other byte.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

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
