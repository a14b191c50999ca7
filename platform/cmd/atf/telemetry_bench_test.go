package main

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/atfhq/atf/platform/telemetry"
)

// countingExporter counts spans and drops them: the benchmark measures
// what tracing costs atf (spans, attributes, batching), not a backend.
type countingExporter struct{ spans atomic.Int64 }

func (e *countingExporter) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	e.spans.Add(int64(len(s)))
	return nil
}
func (e *countingExporter) Shutdown(context.Context) error { return nil }

// BenchmarkTracingCost: throughput of schedule → SUCCESS (in process, as
// BenchmarkThroughput) with tracing off (no provider: atf's default) and
// on at 100% sampling (SDK provider, batch processor, atf's sampler,
// redisotel on the store's client).
func BenchmarkTracingCost(b *testing.B) {
	const n = 5000
	for _, mode := range []string{"off", "on-100pct"} {
		b.Run(mode, func(b *testing.B) {
			exp := &countingExporter{}
			var tp *sdktrace.TracerProvider
			if mode == "off" {
				otel.SetTracerProvider(noop.NewTracerProvider())
			} else {
				tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
					sdktrace.WithSampler(telemetry.Sampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))))
				otel.SetTracerProvider(tp)
				b.Cleanup(func() {
					_ = tp.Shutdown(context.Background())
					otel.SetTracerProvider(noop.NewTracerProvider())
				})
			}
			bp := startPlatform(b, 256)
			if mode != "off" {
				if err := redisotel.InstrumentTracing(bp.rdb, redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				before := exp.spans.Load()
				took := bp.scheduleAndWait(b, "noop", n, 32)
				report(b, "throughput (tracing "+mode+")", float64(n)/took.Seconds(), "tasks/s", "")
				if tp != nil {
					_ = tp.ForceFlush(b.Context())
					report(b, "spans exported per task", float64(exp.spans.Load()-before)/n, "spans/task", "")
				}
			}
		})
	}
}
