package hsc

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/telemetry"
)

// startSetResult starts the span of recording a result: a child of the
// executor's execute span (through otelconnect's server span over Connect,
// directly when the executor runs in process).
func startSetResult(ctx context.Context, req *atfv1.SetResultRequest) (context.Context, trace.Span) {
	// With tracing off the span would record nothing and carry the span
	// context ctx carries: ctx's own span stands for it, unless that one
	// records (a provider of its own, not the global one).
	if span := trace.SpanFromContext(ctx); !telemetry.Tracing() && !span.IsRecording() {
		return ctx, span
	}
	return telemetry.Tracer().Start(ctx, "atf.set_result", trace.WithAttributes(
		telemetry.KeyTaskID.String(req.GetTaskId()),
		telemetry.KeyOutcome.String(strings.ToLower(strings.TrimPrefix(req.GetOutcome().String(), "OUTCOME_"))),
	))
}

func endSetResult(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// AttemptRecorder is the optional part of Store that keeps an attempt's
// logs and execute span; *store.Store is one.
type AttemptRecorder interface {
	RecordAttempt(ctx context.Context, id string, token int64, traceparent, logs string) error
}

// recordAttempt appends the attempt's logs to the task's and stores its
// span context, before its result, so that a client seeing the task
// finished finds its logs. An attempt with neither (a first attempt that
// logged nothing, tracing off) costs no write: the executor sends a later
// attempt's header even when it logged nothing.
func (h *HSC) recordAttempt(ctx context.Context, req *atfv1.SetResultRequest) error {
	rec := h.recorderFor(req)
	if rec == nil {
		return nil
	}
	return rec.RecordAttempt(ctx, req.GetTaskId(), req.GetFencingToken(), req.GetExecutionTraceparent(), req.GetLogs())
}

// recorderFor is the store's AttemptRecorder when req has an attempt to
// record, else nil.
func (h *HSC) recorderFor(req *atfv1.SetResultRequest) AttemptRecorder {
	rec, ok := h.cfg.Store.(AttemptRecorder)
	if !ok || (req.GetLogs() == "" && req.GetExecutionTraceparent() == "") {
		return nil
	}
	return rec
}
