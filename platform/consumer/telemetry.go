package consumer

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/platform/tracectx"
)

// ObserveEnqueued is a store.Options.OnEnqueue: it counts each push by
// reason (atf.tasks.enqueued; the timeouts are the re-enqueues) and gives
// the push an atf.enqueue span in the task's trace.
func ObserveEnqueued(ctx context.Context, tasks []store.Enqueued) {
	tracer := telemetry.Tracer()
	for _, t := range tasks {
		reason := enqueueReason(t.From)
		telemetry.TaskPushed(ctx, t.Lambda, reason)
		parent := tracectx.Parse(t.TraceParent)
		if !parent.IsSampled() {
			continue
		}
		_, span := tracer.Start(trace.ContextWithRemoteSpanContext(ctx, parent), "atf.enqueue",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				telemetry.KeyTaskID.String(t.TaskID),
				telemetry.KeyLambda.String(t.Lambda),
				telemetry.KeyReason.String(reason),
			))
		span.End()
	}
}

func enqueueReason(from atfv1.TaskState) string {
	switch from {
	case atfv1.TaskState_TASK_STATE_NEW:
		return telemetry.ReasonDue
	case atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE:
		return telemetry.ReasonRetry
	case atfv1.TaskState_TASK_STATE_ENQUEUED:
		return telemetry.ReasonEnqueueTimeout
	case atfv1.TaskState_TASK_STATE_CLAIMED:
		return telemetry.ReasonClaimTimeout
	case atfv1.TaskState_TASK_STATE_PROCESSING:
		return telemetry.ReasonHeartbeatTimeout
	}
	return "unknown"
}
