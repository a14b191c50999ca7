package frontend_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

func TestWatchTask(t *testing.T) {
	b := setup(t)
	res, err := b.tasks.Schedule(b.ctx, &atfv1.ScheduleRequest{Lambda: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetId()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	stream, err := b.tasks.WatchTask(ctx, &atfv1.WatchTaskRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	next := func() *atfv1.Task {
		t.Helper()
		if !stream.Receive() {
			t.Fatalf("stream ended: %v", stream.Err())
		}
		return stream.Msg().GetTask()
	}
	if got := next(); got.GetState() != atfv1.TaskState_TASK_STATE_ENQUEUED {
		t.Fatalf("first message: %v", got)
	}
	// Each step waits past the longest poll, so none is coalesced.
	claimed, err := b.store.Claim(b.ctx, []store.ClaimRequest{{TaskID: id, LambdaVersion: 1}}, time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatal(claimed, err)
	}
	if got := next(); got.GetState() != atfv1.TaskState_TASK_STATE_CLAIMED || got.GetAttempt() != 1 {
		t.Fatalf("after claim: %v", got)
	}
	if _, err := b.store.Heartbeat(b.ctx, []store.Beat{{TaskID: id, Token: claimed[0].Token, Progress: 40}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := next(); got.GetState() != atfv1.TaskState_TASK_STATE_PROCESSING || got.GetProgress() != 40 {
		t.Fatalf("after heartbeat: %v", got)
	}
	if _, err := b.store.SetResult(b.ctx, store.Result{TaskID: id, Token: claimed[0].Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	if got := next(); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || string(got.GetOutput()) != "ok" {
		t.Fatalf("after result: %v", got)
	}
	if stream.Receive() {
		t.Fatalf("stream goes on after the terminal state: %v", stream.Msg())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream ended with %v", err)
	}

	// A finished task: one message, then the end. Over REST, as JSON lines.
	req, _ := http.NewRequestWithContext(ctx, "GET", b.url+"/v1/tasks/"+id+"/watch", nil)
	hres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer hres.Body.Close()
	sc := bufio.NewScanner(hres.Body)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if hres.Header.Get("Content-Type") != "application/x-ndjson" || len(lines) != 1 || !strings.Contains(lines[0], "TASK_STATE_SUCCESS") {
		t.Fatalf("REST watch: %s %q", hres.Header.Get("Content-Type"), lines)
	}

	bad, err := b.tasks.WatchTask(ctx, &atfv1.WatchTaskRequest{Id: "00" + strings.Repeat("0", 26)})
	if err == nil {
		for bad.Receive() {
		}
		err = bad.Err()
	}
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("watch of an unknown task: %v", err)
	}
}
