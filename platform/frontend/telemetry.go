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
	// With tracing off the span would record nothing and carry the span
	// context ctx carries: ctx's own span stands for it, unless that one
	// records (a provider of its own, not the global one).
	if span := trace.SpanFromContext(ctx); !telemetry.Tracing() && !span.IsRecording() {
		return ctx, span
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
// began at stored: the push is counted, and gets the atf.enqueue span the
// store consumer gives the tasks it enqueues, under its atf.schedule span.
func endSchedule(ctx context.Context, span trace.Span, t store.Task, dedup bool, stored time.Time, err error) {
	defer span.End()
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return
	}
	if span.IsRecording() {
		span.SetAttributes(
			telemetry.KeyTaskID.String(t.ID),
			telemetry.KeyNamespace.String(t.Namespace),
			telemetry.KeyPriority.Int(t.Priority),
			telemetry.KeyState.String(t.State.String()),
		)
		if dedup {
			span.SetAttributes(attrDeduplicated.Bool(true))
		}
	}
	if dedup {
		return
	}
	telemetry.TaskScheduled(ctx, t.Lambda)
	if t.State == atfv1.TaskState_TASK_STATE_ENQUEUED {
		telemetry.TaskPushed(ctx, t.Lambda, telemetry.ReasonDue)
		if span.IsRecording() && !stored.IsZero() {
			enqueueSpan(trace.ContextWithSpan(ctx, span), t.ID, t.Lambda, telemetry.ReasonDue, stored)
		}
	}
}

// enqueueSpan records the frontend's push of a task to its queue, which
// began at start, as an atf.enqueue span under the span of ctx.
func enqueueSpan(ctx context.Context, id, lambda, reason string, start time.Time) {
	_, enq := telemetry.Tracer().Start(ctx, "atf.enqueue",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithTimestamp(start),
		trace.WithAttributes(
			telemetry.KeyTaskID.String(id),
			telemetry.KeyLambda.String(lambda),
			telemetry.KeyReason.String(reason),
			attrEnqueuedBy.String("frontend"),
		))
	enq.End()
}

// retryEnqueued counts RetryTask's push of a dead letter and records it in
// the task's own trace, as the store consumer's pushes are.
func retryEnqueued(ctx context.Context, t store.Task, start time.Time) {
	pushedInTrace(ctx, t.ID, t.Lambda, t.TraceParent, telemetry.ReasonManualRetry, start)
}

// resumeEnqueued counts ResumeLambda's pushes of tasks a pause held, which
// began at start, and records each in its task's own trace.
func resumeEnqueued(ctx context.Context, tasks []store.Enqueued, start time.Time) {
	for _, t := range tasks {
		pushedInTrace(ctx, t.TaskID, t.Lambda, t.TraceParent, telemetry.ReasonResume, start)
	}
}

// pushedInTrace counts a push the frontend made outside a task's
// atf.schedule call and gives it an atf.enqueue span in the task's own
// trace (traceparent, as stored), under its atf.schedule span; a task of
// an unsampled trace gets no span.
func pushedInTrace(ctx context.Context, id, lambda, traceparent, reason string, start time.Time) {
	telemetry.TaskPushed(ctx, lambda, reason)
	if !telemetry.Tracing() {
		return
	}
	parent := tracectx.Parse(traceparent)
	if !parent.IsSampled() {
		return
	}
	enqueueSpan(trace.ContextWithRemoteSpanContext(ctx, parent), id, lambda, reason, start)
}

const (
	attrDeduplicated = attribute.Key("atf.task.deduplicated")
	// attrEnqueuedBy marks the atf.enqueue spans of tasks the frontend
	// pushed itself (due now, retried, resumed); the store consumer's
	// have none.
	attrEnqueuedBy = attribute.Key("atf.enqueue.by")
)
