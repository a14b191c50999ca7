package frontend_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

func TestGating(t *testing.T) {
	b := setup(t)
	status, body := b.do(t, "POST", "/v1/lambdas/echo/pause?collection=marketing", "")
	if status != 200 {
		t.Fatalf("pause: %d %s", status, body)
	}
	l := decode(t, body, &atfv1.Lambda{})
	if l.GetPaused() || !slices.Equal(l.GetPausedCollections(), []string{"marketing"}) {
		t.Fatalf("after pausing a collection: %s", body)
	}
	if _, err := b.lambdas.PauseLambda(b.ctx, &atfv1.PauseLambdaRequest{Name: "echo"}); err != nil {
		t.Fatal(err)
	}
	got, err := b.lambdas.GetLambda(b.ctx, &atfv1.GetLambdaRequest{Name: "echo"})
	if err != nil || !got.GetLambda().GetPaused() {
		t.Fatalf("GetLambda after pause: %v %v", got, err)
	}
	sched, err := b.tasks.Schedule(b.ctx, &atfv1.ScheduleRequest{Lambda: "echo", Collection: "marketing"})
	if err != nil {
		t.Fatal(err)
	}
	id := sched.GetTask().GetId()
	// The controller pops and tries to claim it: parked.
	if c, err := b.store.Claim(b.ctx, []store.ClaimRequest{{TaskID: id, LambdaVersion: 1}}, time.Minute); err != nil || len(c) != 0 {
		t.Fatalf("claimed a paused task: %v %v", c, err)
	}
	task, _ := b.tasks.GetTask(b.ctx, &atfv1.GetTaskRequest{Id: id})
	if !task.GetTask().GetParked() || task.GetTask().GetState() != atfv1.TaskState_TASK_STATE_NEW {
		t.Fatalf("paused task: %v", task.GetTask())
	}
	// Resuming the lambda leaves the collection paused.
	status, body = b.do(t, "POST", "/v1/lambdas/echo/resume", "")
	res := decode(t, body, &atfv1.ResumeLambdaResponse{})
	if status != 200 || res.GetResumed() != 0 || res.GetLambda().GetPaused() {
		t.Fatalf("resume: %d %s", status, body)
	}
	res2, err := b.lambdas.ResumeLambda(b.ctx, &atfv1.ResumeLambdaRequest{Name: "echo", Collection: "marketing"})
	if err != nil || res2.GetResumed() != 1 || len(res2.GetLambda().GetPausedCollections()) != 0 {
		t.Fatalf("resume marketing: %v %v", res2, err)
	}
	if c, err := b.store.Claim(b.ctx, []store.ClaimRequest{{TaskID: id, LambdaVersion: 1}}, time.Minute); err != nil || len(c) != 1 {
		t.Fatalf("resumed task not claimed: %v %v", c, err)
	}

	// Drop cancels what waits.
	ids := b.scheduleIn(t, "c", 3)
	status, body = b.do(t, "POST", "/v1/lambdas/echo/drop?collection=c", "")
	if status != 200 || !strings.Contains(body, `"cancelled":"3"`) {
		t.Fatalf("drop: %d %s", status, body)
	}
	for _, id := range ids {
		r, _ := b.tasks.GetTask(b.ctx, &atfv1.GetTaskRequest{Id: id})
		if r.GetTask().GetState() != atfv1.TaskState_TASK_STATE_CANCELLED {
			t.Fatalf("dropped task is %s", r.GetTask().GetState())
		}
	}
	dr, err := b.lambdas.DropLambda(b.ctx, &atfv1.DropLambdaRequest{Name: "echo"})
	if err != nil || dr.GetCancelled() != 0 {
		t.Fatalf("drop again: %v %v", dr, err)
	}

	_, err = b.lambdas.PauseLambda(b.ctx, &atfv1.PauseLambdaRequest{Name: "nope"})
	wantCode(t, err, connect.CodeNotFound, "nope")
	_, err = b.lambdas.PauseLambda(b.ctx, &atfv1.PauseLambdaRequest{Name: "echo", Collection: "a b"})
	wantCode(t, err, connect.CodeInvalidArgument, "collection")
	if status, _ := b.do(t, "POST", "/v1/lambdas/nope/resume", ""); status != http.StatusNotFound {
		t.Fatalf("resume of an unknown lambda: %d", status)
	}
}

func TestSetSchedule(t *testing.T) {
	b := setup(t)
	status, body := b.do(t, "PUT", "/v1/lambdas/echo/schedule?cron=*/5+*+*+*+*&priority=3&collection=tick", `{"n":1}`)
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	l := decode(t, body, &atfv1.Lambda{})
	sc := l.GetSchedule()
	if sc.GetCron() != "*/5 * * * *" || string(sc.GetPayload()) != `{"n":1}` || sc.GetPriority() != 3 || sc.GetCollection() != "tick" {
		t.Fatalf("schedule = %v", sc)
	}
	next := sc.GetNextTick().AsTime()
	if next.Minute()%5 != 0 || next.Second() != 0 || time.Until(next) > 5*time.Minute || time.Until(next) <= 0 {
		t.Fatalf("next tick %s", next)
	}
	all, err := b.store.Schedules(b.ctx)
	if err != nil || len(all) != 1 || all[0].Lambda != "echo" {
		t.Fatalf("stored schedules: %v %v", all, err)
	}
	ls, err := b.lambdas.ListLambdas(b.ctx, &atfv1.ListLambdasRequest{})
	if err != nil || ls.GetLambdas()[0].GetSchedule().GetCron() != "*/5 * * * *" {
		t.Fatalf("ListLambdas: %v %v", ls, err)
	}
	for _, c := range []struct {
		req  *atfv1.SetScheduleRequest
		code connect.Code
		msg  string
	}{
		{&atfv1.SetScheduleRequest{Name: "echo", Cron: "every minute"}, connect.CodeInvalidArgument, "not a schedule"},
		{&atfv1.SetScheduleRequest{Name: "echo", Cron: "* * * * * *"}, connect.CodeInvalidArgument, "not a schedule"},
		{&atfv1.SetScheduleRequest{Name: "echo", Cron: "@hourly", Priority: 10}, connect.CodeInvalidArgument, "priority"},
		{&atfv1.SetScheduleRequest{Name: "nope", Cron: "@hourly"}, connect.CodeNotFound, "nope"},
	} {
		_, err := b.lambdas.SetSchedule(b.ctx, c.req)
		wantCode(t, err, c.code, c.msg)
	}
	if status, body := b.do(t, "DELETE", "/v1/lambdas/echo/schedule", ""); status != 200 || strings.Contains(body, "schedule") {
		t.Fatalf("delete: %d %s", status, body)
	}
	if all, _ := b.store.Schedules(b.ctx); len(all) != 0 {
		t.Fatalf("schedules after delete: %v", all)
	}
}

// TestResumeSpans: each task a resume enqueues gets an atf.enqueue span in
// its own trace, under its atf.schedule span, as a retried dead letter
// does; a task of an unsampled trace gets none.
func TestResumeSpans(t *testing.T) {
	b := setup(t)
	if _, err := b.lambdas.PauseLambda(b.ctx, &atfv1.PauseLambdaRequest{Name: "echo", Collection: "c"}); err != nil {
		t.Fatal(err)
	}
	ids := b.scheduleIn(t, "c", 3)
	req, err := http.NewRequestWithContext(b.ctx, "POST", b.url+"/v1/lambdas/echo/tasks?collection=c", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-4bf92f3577b34a0e9ff1e7ad0e0d3c99-00f067aa0ba902b7-00")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	unsampled := decode(t, string(body), &atfv1.Task{}).GetId()
	// The controller pops them and tries to claim them: parked.
	var reqs []store.ClaimRequest
	for _, id := range append(ids, unsampled) {
		reqs = append(reqs, store.ClaimRequest{TaskID: id, LambdaVersion: 1})
	}
	if c, err := b.store.Claim(b.ctx, reqs, time.Minute); err != nil || len(c) != 0 {
		t.Fatalf("claimed paused tasks: %v %v", c, err)
	}

	r, err := b.lambdas.ResumeLambda(b.ctx, &atfv1.ResumeLambdaRequest{Name: "echo", Collection: "c"})
	if err != nil || r.GetResumed() != 4 {
		t.Fatalf("resume: %v %v", r, err)
	}
	resumed := func(id string) []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range taskSpans("atf.enqueue", id) {
			if attr(s, "atf.enqueue.reason") == "resume" {
				out = append(out, s)
			}
		}
		return out
	}
	for _, id := range ids {
		enq, sched := resumed(id), taskSpans("atf.schedule", id)
		if len(enq) != 1 || len(sched) != 1 {
			t.Fatalf("task %s: %d resume atf.enqueue spans, %d atf.schedule spans; want 1 and 1", id, len(enq), len(sched))
		}
		if enq[0].Parent().SpanID() != sched[0].SpanContext().SpanID() || enq[0].SpanContext().TraceID() != sched[0].SpanContext().TraceID() {
			t.Errorf("task %s: resume's atf.enqueue is not under its atf.schedule", id)
		}
		if attr(enq[0], "atf.enqueue.by") != "frontend" || attr(enq[0], "atf.lambda.name") != "echo" {
			t.Errorf("task %s: atf.enqueue attributes %v", id, enq[0].Attributes())
		}
	}
	if enq := resumed(unsampled); len(enq) != 0 {
		t.Errorf("task of an unsampled trace: %d resume atf.enqueue spans", len(enq))
	}
}

// scheduleIn schedules n tasks of echo in a collection and returns their ids.
func (b *testBundle) scheduleIn(t *testing.T, collection string, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		r, err := b.tasks.Schedule(b.ctx, &atfv1.ScheduleRequest{Lambda: "echo", Collection: collection})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.GetTask().GetId())
	}
	return ids
}
