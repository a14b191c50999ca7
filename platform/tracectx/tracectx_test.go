package tracectx

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The direct Parse and Format agree with propagation.TraceContext.
func TestParseFormatMatchPropagator(t *testing.T) {
	for _, s := range parseCases {
		checkParse(t, s)
	}
	if Format(newRoot()) == "" || !Parse(Format(newRoot())).IsValid() {
		t.Error("a new root does not round-trip")
	}
}

var parseCases = []string{
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", // unknown flag bits
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-10", // reserved flag bits: invalid in version 00
	"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
	"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
	"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
	"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", // not hex
	"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
	"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
	"garbage",
	"",
}

// checkParse: Parse, Format and TraceID of s agree with the propagator.
func checkParse(t *testing.T, s string) {
	t.Helper()
	want := trace.SpanContextFromContext(propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": s}))
	got := Parse(s)
	if !got.Equal(want) {
		t.Errorf("Parse(%q) = %v, propagator says %v", s, got, want)
	}
	carrier := propagation.MapCarrier{}
	propagator.Inject(trace.ContextWithSpanContext(context.Background(), want), carrier)
	if f := Format(want); f != carrier.Get("traceparent") {
		t.Errorf("Format(%v) = %q, propagator says %q", want, f, carrier.Get("traceparent"))
	}
	wantID := ""
	if want.IsValid() {
		wantID = want.TraceID().String()
	}
	if id := TraceID(s); id != wantID {
		t.Errorf("TraceID(%q) = %q, want %q", s, id, wantID)
	}
	if f := FormatReuse(want, s); f != Format(want) {
		t.Errorf("FormatReuse(%v, %q) = %q, want %q", want, s, f, Format(want))
	}
}

// FormatReuse gives back the text it is handed when that is the span
// context's, without a new string.
func TestFormatReuse(t *testing.T) {
	s := parseCases[0]
	if n := testing.AllocsPerRun(100, func() { FormatReuse(Parse(s), s) }); n != 0 {
		t.Errorf("FormatReuse of the common form: %v allocations, want 0", n)
	}
	other := Parse(parseCases[1])
	if got := FormatReuse(other, s); got != parseCases[1] {
		t.Errorf("FormatReuse of another span context = %q, want %q", got, parseCases[1])
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range parseCases {
		f.Add(s)
	}
	f.Fuzz(checkParse)
}

func TestTraceIDAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { TraceID(parseCases[0]) }); n != 0 {
		t.Errorf("TraceID of the common form: %v allocations, want 0", n)
	}
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
}
