package executor

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/platform/tracectx"
	"github.com/atfhq/atf/runtime/sandbox"
)

// startExecute starts the span of one attempt, a child of the Schedule
// span stored on the task. The returned context carries it into
// sandbox.Run, where the sandbox's host functions can open the guest's
// spans as its children, and into SetResult.
//
// late, when >= 0, is how long after its execute_at a first attempt
// started (the atf.task.start.lateness histogram).
func startExecute(ctx context.Context, executorID string, w *atfv1.Work, late time.Duration) (context.Context, trace.Span) {
	if parent := tracectx.Parse(w.GetTraceparent()); parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	telemetry.TaskStarted(ctx, w.GetLambda(), late)
	if !telemetry.Tracing() {
		// The span would record nothing and carry its parent's context,
		// which ctx carries already (ctx has no other span).
		return ctx, trace.SpanFromContext(ctx)
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			telemetry.KeyTaskID.String(w.GetTaskId()),
			telemetry.KeyNamespace.String(w.GetNamespace()),
			telemetry.KeyLambda.String(w.GetLambda()),
			telemetry.KeyLambdaVersion.Int64(w.GetLambdaVersion()),
			telemetry.KeyAttempt.Int(int(w.GetAttempt())),
			telemetry.KeyPriority.Int(int(w.GetPriority())),
			telemetry.KeyExecutor.String(executorID),
		),
	}
	if prev := previousAttempt(w); prev.IsValid() {
		// A retry is a new span in the same trace, linked to the attempt
		// before it.
		opts = append(opts, trace.WithLinks(trace.Link{
			SpanContext: prev,
			Attributes:  []attribute.KeyValue{attribute.String("atf.link", "previous_attempt")},
		}))
	}
	return telemetry.Tracer().Start(ctx, "atf.execute", opts...)
}

// noSpan stands for a task's execute span until it starts.
var noSpan = trace.SpanFromContext(context.Background())

// guestTraceParent is the TRACEPARENT a module sees: the execute span, so
// the spans a lambda opens itself are its children.
func guestTraceParent(span trace.Span, w *atfv1.Work) string {
	if sc := span.SpanContext(); sc.IsValid() {
		// With tracing off the span is the task's stored parent: its
		// traceparent, reused rather than formatted anew.
		return tracectx.FormatReuse(sc, w.GetTraceparent())
	}
	return w.GetTraceparent()
}

// heartbeatEvent records a heartbeat's answer on the task's execute span.
func heartbeatEvent(span trace.Span, d atfv1.Directive) {
	if span == nil || !span.IsRecording() {
		return
	}
	span.AddEvent("heartbeat", trace.WithAttributes(
		attribute.String("atf.heartbeat.directive", strings.TrimPrefix(d.String(), "DIRECTIVE_"))))
}

// endExecute records how the attempt ended on its span and in the metrics.
// cause is why the run's context ended, nil when it did not.
// cpu is the CPU time of the run, 0 when not measured.
func endExecute(ctx context.Context, span trace.Span, w *atfv1.Work, res sandbox.Result, cause error) {
	cpu := res.CPUTime
	defer span.End()
	outcome := outcomeName(res.Outcome)
	switch {
	case errors.Is(cause, errClaimLost), errors.Is(cause, errShutdown), errors.Is(cause, ErrHeartbeatsFailed):
		outcome = "aborted"
		span.SetAttributes(attribute.String("atf.abort.reason", cause.Error()))
	}
	memory := sandboxMemory(res)
	telemetry.TaskFinished(ctx, w.GetLambda(), outcome, res.Duration, cpu, memory)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(
		telemetry.KeyOutcome.String(outcome),
		attribute.Float64("atf.task.duration_seconds", res.Duration.Seconds()),
	)
	if memory > 0 {
		span.SetAttributes(attribute.Int64("atf.sandbox.memory.peak_bytes", int64(memory)))
	}
	if cpu > 0 {
		span.SetAttributes(attribute.Float64("atf.task.cpu_seconds", cpu.Seconds()))
	}
	if e := res.Error; e != nil {
		if e.GetLimit() != "" {
			span.SetAttributes(telemetry.KeyLimit.String(e.GetLimit()))
		}
		span.SetAttributes(attribute.String("atf.error.kind", e.GetKind().String()))
		if e.ExitCode != nil {
			span.SetAttributes(attribute.Int("atf.exit_code", int(e.GetExitCode())))
		}
		if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			span.SetStatus(codes.Error, e.GetMessage())
		}
	}
}

// outcomeNames are the outcomes as metrics and spans name them ("success"),
// made once rather than for every task.
var outcomeNames = func() map[atfv1.Outcome]string {
	m := make(map[atfv1.Outcome]string, len(atfv1.Outcome_name))
	for v := range atfv1.Outcome_name {
		o := atfv1.Outcome(v)
		m[o] = strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_"))
	}
	return m
}()

// outcomeName is o as metrics and spans name it: "success" for
// OUTCOME_SUCCESS.
func outcomeName(o atfv1.Outcome) string {
	if n, ok := outcomeNames[o]; ok {
		return n
	}
	return strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_"))
}

// previousAttempt is the execute span of the attempt before this one, when
// the controller knows it.
func previousAttempt(w *atfv1.Work) trace.SpanContext {
	return tracectx.Parse(w.GetPreviousExecution())
}

// sandboxMemory is the peak linear memory of the run, 0 when unknown.
func sandboxMemory(res sandbox.Result) uint64 { return res.MemoryPeakBytes }
