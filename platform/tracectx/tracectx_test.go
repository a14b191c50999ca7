package tracectx

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The direct Parse and Format agree with propagation.TraceContext.
func TestParseFormatMatchPropagator(t *testing.T) {
	cases := []string{
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", // unknown flag bits
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", // not hex
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"garbage",
	}
	for _, s := range cases {
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
	}
	if Format(newRoot()) == "" || !Parse(Format(newRoot())).IsValid() {
		t.Error("a new root does not round-trip")
	}
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
}
