package frontend_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/encoding/protojson"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/tracectx"
)

// spans records every span of the package's tests: tracing is on for all
// of them, as with OTEL_TRACES_EXPORTER set.
var spans = tracetest.NewSpanRecorder()

func init() {
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
}

// taskSpans returns the ended spans named name whose atf.task.id is id.
func taskSpans(name, id string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.Name() != name {
			continue
		}
		for _, a := range s.Attributes() {
			if a.Key == "atf.task.id" && a.Value.AsString() == id {
				out = append(out, s)
			}
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, a := range s.Attributes() {
		if a.Key == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// TestScheduleSpans: every task of a batch gets its own atf.schedule span,
// whose context is the one stored on the task, and a task due now, pushed
// to its queue by the frontend, gets an atf.enqueue span under it, as the
// store consumer gives a later task.
func TestScheduleSpans(t *testing.T) {
	b := setup(t)
	const traceID, callerSpan = "4bf92f3577b34a0e9ff1e7ad0e0d3c99", "00f067aa0ba902b7"
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	req, err := http.NewRequestWithContext(b.ctx, "POST", b.url+"/v1/lambdas/echo/tasks:batch",
		strings.NewReader(`[{"payloadText":"now"},{"payloadText":"later","at":"`+later+`"}]`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var batch atfv1.ScheduleBatchResponse
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if err := protojson.Unmarshal(body, &batch); err != nil || len(batch.GetResults()) != 2 {
		t.Fatalf("batch: %d %s %v", res.StatusCode, body, err)
	}
	status, single := b.do(t, "POST", "/v1/lambdas/echo/tasks", "single")
	if status != http.StatusCreated {
		t.Fatalf("schedule: %d %s", status, single)
	}
	var one atfv1.Task
	if err := protojson.Unmarshal([]byte(single), &one); err != nil {
		t.Fatal(err)
	}

	ids := []string{batch.GetResults()[0].GetTask().GetId(), batch.GetResults()[1].GetTask().GetId(), one.GetId()}
	for i, id := range ids {
		sched := taskSpans("atf.schedule", id)
		if len(sched) != 1 {
			t.Fatalf("task %d (%s): %d atf.schedule spans, want 1", i, id, len(sched))
		}
		task, err := b.store.GetTask(b.ctx, "default", id)
		if err != nil {
			t.Fatal(err)
		}
		if got := tracectx.Parse(task.TraceParent); got.SpanID() != sched[0].SpanContext().SpanID() {
			t.Errorf("task %d: stored traceparent %s is not its atf.schedule span %s", i, task.TraceParent, sched[0].SpanContext().SpanID())
		}
		enq := taskSpans("atf.enqueue", id)
		dueNow := i != 1
		if dueNow != (len(enq) == 1) || len(enq) > 1 {
			t.Fatalf("task %d: %d atf.enqueue spans, want due now %v", i, len(enq), dueNow)
		}
		if dueNow {
			if enq[0].Parent().SpanID() != sched[0].SpanContext().SpanID() {
				t.Errorf("task %d: atf.enqueue's parent is not its atf.schedule", i)
			}
			if attr(enq[0], "atf.enqueue.reason") != "due" || attr(enq[0], "atf.enqueue.by") != "frontend" {
				t.Errorf("task %d: atf.enqueue attributes %v", i, enq[0].Attributes())
			}
		}
	}
	// The batch's tasks are in the caller's trace, each under the caller's
	// span with its own atf.schedule span.
	for i, id := range ids[:2] {
		sc := taskSpans("atf.schedule", id)[0]
		if sc.SpanContext().TraceID().String() != traceID || sc.Parent().SpanID().String() != callerSpan {
			t.Errorf("batch task %d: atf.schedule in trace %s under %s, want %s under %s", i,
				sc.SpanContext().TraceID(), sc.Parent().SpanID(), traceID, callerSpan)
		}
	}
}
