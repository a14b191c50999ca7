package frontend

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/platform/tracectx"
)

// startSchedule starts the frontend's span of a Schedule call: the span
// whose context is stored on the task, so that every later step of the
// task hangs under it. Over Connect and gRPC it is a child of otelconnect's
// server span; on the REST route, which has none, it is the server span
// itself and its parent is the request's traceparent header.
func startSchedule(ctx context.Context, lambda string, h http.Header) (context.Context, trace.Span) {
	kind := trace.SpanKindInternal
	if !trace.SpanContextFromContext(ctx).IsValid() && h != nil {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(h))
		kind = trace.SpanKindServer
	}
	return telemetry.Tracer().Start(ctx, "atf.schedule", trace.WithSpanKind(kind),
		trace.WithAttributes(telemetry.KeyLambda.String(lambda)))
}

// scheduleTraceParent is the traceparent stored on the task: the Schedule
// span's context. With tracing off the span is the API's non-recording one,
// carrying the caller's context if there was one; with none, the task gets
// a trace id of its own all the same.
func scheduleTraceParent(ctx context.Context, span trace.Span, h http.Header) string {
	if sc := span.SpanContext(); sc.IsValid() {
		return tracectx.Format(sc)
	}
	return tracectx.FromRequest(ctx, h)
}

// endSchedule ends a task's atf.schedule span and counts the task. A task
// stored ENQUEUED (due now) was pushed to its queue by the store call that
// began at stored: it gets the atf.enqueue span the store consumer gives
// the tasks it enqueues, under its atf.schedule span.
func endSchedule(ctx context.Context, span trace.Span, t store.Task, dedup bool, stored time.Time, err error) {
	defer span.End()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return
	}
	span.SetAttributes(
		telemetry.KeyTaskID.String(t.ID),
		telemetry.KeyNamespace.String(t.Namespace),
		telemetry.KeyPriority.Int(t.Priority),
		telemetry.KeyState.String(t.State.String()),
	)
	if dedup {
		span.SetAttributes(attrDeduplicated.Bool(true))
		return
	}
	telemetry.TaskScheduled(ctx, t.Lambda)
	if t.State == atfv1.TaskState_TASK_STATE_ENQUEUED && span.IsRecording() && !stored.IsZero() {
		_, enq := telemetry.Tracer().Start(trace.ContextWithSpan(ctx, span), "atf.enqueue",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithTimestamp(stored),
			trace.WithAttributes(
				telemetry.KeyTaskID.String(t.ID),
				telemetry.KeyLambda.String(t.Lambda),
				telemetry.KeyReason.String(telemetry.ReasonDue),
				attrEnqueuedBy.String("frontend"),
			))
		enq.End()
	}
}

const (
	attrDeduplicated = attribute.Key("atf.task.deduplicated")
	// attrEnqueuedBy marks the atf.enqueue spans of tasks the frontend
	// pushed itself (due now); the store consumer's have none.
	attrEnqueuedBy = attribute.Key("atf.enqueue.by")
)
