package executor

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/tracectx"
	"github.com/atfhq/atf/runtime/sandbox"
)

// traceRunner succeeds at once and records the span of each run's context
// and the TRACEPARENT the module sees.
type traceRunner struct {
	mu        sync.Mutex
	sc        trace.SpanContext
	recording bool
	env       string
}

func (r *traceRunner) Run(ctx context.Context, job sandbox.Job) sandbox.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	span := trace.SpanFromContext(ctx)
	r.sc, r.recording, r.env = span.SpanContext(), span.IsRecording(), job.Vars.TraceParent
	return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_SUCCESS}
}

// TestExecuteSpan: with tracing off (no-op provider) no span is started,
// yet the run's context carries the task's stored trace context (logs and
// guest spans use it) and the module sees it as TRACEPARENT; with tracing
// on, the run's context carries the recording atf.execute span, a child
// of the stored context, which the module sees and SetResult reports.
func TestExecuteSpan(t *testing.T) {
	defer otel.SetTracerProvider(otel.GetTracerProvider())
	const stored = "00-4bf92f3577b34a0e9ff1e7ad0e0d3c99-00f067aa0ba902b7-01"
	parent := tracectx.Parse(stored)
	rec := tracetest.NewSpanRecorder()
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"off", noop.NewTracerProvider()}, {"on", sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))}} {
		t.Run(c.name, func(t *testing.T) {
			otel.SetTracerProvider(c.tp)
			w := work("t1")
			w.Traceparent = stored
			runner := &traceRunner{}
			b := setup(t, runner, w)
			if err := runFor(t, b.ex, 200*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			_, results := b.status.snapshot()
			if len(results) != 1 {
				t.Fatalf("%d results, want 1", len(results))
			}
			runner.mu.Lock()
			defer runner.mu.Unlock()
			sc := runner.sc
			if c.name == "off" {
				if runner.recording || !sc.Equal(parent) || runner.env != stored {
					t.Errorf("run's span %v (recording %v), TRACEPARENT %s; want the stored context %s", sc, runner.recording, runner.env, stored)
				}
				if tp := results[0].GetExecutionTraceparent(); tp != "" {
					t.Errorf("execution traceparent %q with tracing off", tp)
				}
				return
			}
			if !runner.recording || sc.TraceID() != parent.TraceID() || sc.SpanID() == parent.SpanID() || runner.env != tracectx.Format(sc) {
				t.Errorf("run's span %v (recording %v), TRACEPARENT %s; want a recording child of %s", sc, runner.recording, runner.env, stored)
			}
			if tp := results[0].GetExecutionTraceparent(); tp != tracectx.Format(sc) {
				t.Errorf("execution traceparent %q, want the execute span's", tp)
			}
			ended := rec.Ended()
			if len(ended) != 1 || ended[0].Name() != "atf.execute" || ended[0].Parent().SpanID() != parent.SpanID() {
				t.Fatalf("ended spans %v, want one atf.execute under the stored context", ended)
			}
		})
	}
}

func TestOutcomeName(t *testing.T) {
	for _, c := range []struct {
		o    atfv1.Outcome
		want string
	}{
		{atfv1.Outcome_OUTCOME_SUCCESS, "success"},
		{atfv1.Outcome_OUTCOME_RETRY, "retry"},
		{atfv1.Outcome_OUTCOME_CANCELLED, "cancelled"},
		{atfv1.Outcome_OUTCOME_UNSPECIFIED, "unspecified"},
		{atfv1.Outcome(99), "99"},
	} {
		if got := outcomeName(c.o); got != c.want {
			t.Errorf("outcomeName(%v) = %q, want %q", c.o, got, c.want)
		}
	}
}
