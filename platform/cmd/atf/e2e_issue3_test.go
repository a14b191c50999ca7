package main

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
)

// TestBatchGatingWatchCron runs issue 3's API features through the atf
// binary with its executor: a batch runs, a paused lambda's task waits
// without running until resumed, a watch streams a task to its end, a
// drop cancels, and a schedule makes its tasks.
func TestBatchGatingWatchCron(t *testing.T) {
	p := startDev(t)
	deploy(t, p, "hi", testmodules.WAT(t, "hello"), "")

	// A batch of three: all run.
	res := do(t, "POST", p.url+"/v1/lambdas/hi/tasks:batch", []byte(`[{"payloadText":"a"},{"payloadJson":{"b":1},"priority":9},{"key":"k"}]`))
	if res.status != http.StatusCreated {
		t.Fatalf("batch: %d %s", res.status, res.body)
	}
	var batch atfv1.ScheduleBatchResponse
	if err := protojson.Unmarshal(res.body, &batch); err != nil || len(batch.GetResults()) != 3 {
		t.Fatalf("batch: %v %s", err, res.body)
	}
	for _, r := range batch.GetResults() {
		if got := finish(t, p, r.GetTask().GetId(), 30*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
			t.Fatalf("batch task: %v", got)
		}
	}

	// Paused: the task waits, parked, attempt unspent; resumed it runs,
	// and a watch sees it through.
	if res := do(t, "POST", p.url+"/v1/lambdas/hi/pause", nil); res.status != 200 || !bytes.Contains(res.body, []byte(`"paused":true`)) {
		t.Fatalf("pause: %d %s", res.status, res.body)
	}
	task := schedule(t, p, "hi", nil)
	time.Sleep(2 * time.Second) // past the controller's lambda refresh
	got := decodeTask(t, do(t, "GET", p.url+"/v1/tasks/"+task.GetId(), nil).body)
	if got.GetFinishedAt() != nil || got.GetAttempt() != 0 || !got.GetParked() {
		t.Fatalf("a paused lambda's task: %v", got)
	}
	watch, err := http.Get(p.url + "/v1/tasks/" + task.GetId() + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Body.Close()
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(watch.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	if res := do(t, "POST", p.url+"/v1/lambdas/hi/resume", nil); res.status != 200 || !bytes.Contains(res.body, []byte(`"resumed":"1"`)) {
		t.Fatalf("resume: %d %s", res.status, res.body)
	}
	var states []string
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			if !ok {
				done = true
				break
			}
			var w atfv1.Task
			if err := protojson.Unmarshal([]byte(line), &w); err != nil {
				t.Fatalf("watch line %q: %v", line, err)
			}
			states = append(states, strings.TrimPrefix(w.GetState().String(), "TASK_STATE_"))
		case <-timeout:
			t.Fatalf("watch did not end; states so far %v", states)
		}
	}
	if len(states) < 2 || states[0] != "NEW" || states[len(states)-1] != "SUCCESS" {
		t.Fatalf("watched states %v, want NEW ... SUCCESS", states)
	}

	// Drop cancels what waits.
	do(t, "POST", p.url+"/v1/lambdas/hi/pause?collection=bulk", nil)
	res = do(t, "POST", p.url+"/v1/lambdas/hi/tasks?collection=bulk", nil)
	dropped := decodeTask(t, res.body)
	if res := do(t, "POST", p.url+"/v1/lambdas/hi/drop?collection=bulk", nil); res.status != 200 || !bytes.Contains(res.body, []byte(`"cancelled":"1"`)) {
		t.Fatalf("drop: %d %s", res.status, res.body)
	}
	if got := finish(t, p, dropped.GetId(), time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("dropped task: %v", got)
	}

	// A schedule every second makes tasks that run.
	if res := do(t, "PUT", p.url+"/v1/lambdas/hi/schedule?cron=@every+1s", []byte("tick")); res.status != 200 {
		t.Fatalf("schedule: %d %s", res.status, res.body)
	}
	time.Sleep(2500 * time.Millisecond)
	do(t, "DELETE", p.url+"/v1/lambdas/hi/schedule", nil)
	var list atfv1.ListTasksResponse
	if err := protojson.Unmarshal(do(t, "GET", p.url+"/v1/lambdas/hi/tasks", nil).body, &list); err != nil {
		t.Fatal(err)
	}
	ticks := 0
	for _, tk := range list.GetTasks() {
		if strings.HasPrefix(tk.GetKey(), "cron:") {
			ticks++
			if got := finish(t, p, tk.GetId(), 10*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
				t.Fatalf("periodic task: %v", got)
			}
		}
	}
	if ticks < 2 || ticks > 3 {
		t.Fatalf("%d periodic tasks in 2.5s of an every-second schedule", ticks)
	}
}
