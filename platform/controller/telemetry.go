package controller

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/platform/tracectx"
)

// traceClaims gives each claimed task an atf.claim span in its own trace
// (a child of the Schedule span stored on the task), covering the claim's
// round trip, and records its pickup latency: from when it was due (its
// execute_at on the first attempt, or when a Retry or Resume enqueued it
// if later; its last enqueue on a later attempt) to now.
func traceClaims(ctx context.Context, start time.Time, tasks []store.Task) {
	now := time.Now()
	tracer, tracing := telemetry.Tracer(), telemetry.Tracing()
	for _, t := range tasks {
		due := t.DueAt()
		if t.Attempt > 1 || due.IsZero() {
			due = t.EnqueuedAt
		}
		if !due.IsZero() {
			telemetry.TaskClaimed(ctx, t.Lambda, t.Priority, now.Sub(due))
		}
		if !tracing {
			continue
		}
		parent := tracectx.Parse(t.TraceParent)
		if !parent.IsSampled() {
			continue // nothing would record it
		}
		_, span := tracer.Start(trace.ContextWithRemoteSpanContext(ctx, parent), "atf.claim",
			trace.WithTimestamp(start),
			trace.WithAttributes(
				telemetry.KeyTaskID.String(t.ID),
				telemetry.KeyLambda.String(t.Lambda),
				telemetry.KeyLambdaVersion.Int64(t.LambdaVersion),
				telemetry.KeyAttempt.Int(t.Attempt),
				telemetry.KeyPriority.Int(t.Priority),
			))
		span.End(trace.WithTimestamp(now))
	}
}
