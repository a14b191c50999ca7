package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/redistest"
	"github.com/redis/go-redis/v9"
)

// TestBatchGatingWatchCron runs issue 3's API features through the atf
// binary with its executor: a batch runs, a paused lambda's task waits
// without running until resumed, a watch streams a task to its end, a
// drop cancels, and a schedule makes its tasks.
func TestBatchGatingWatchCron(t *testing.T) {
	batchGatingWatchCron(t, startDev(t))
}

// TestDispatchLead: with `--dispatch-lead 300ms` a task due later is
// enqueued ahead of its execute_at by the lead, and the executor holds it
// until then: it starts at its time, never before; its start lateness is
// on /metrics.
func TestDispatchLead(t *testing.T) {
	p := startDev(t, "--dispatch-lead", "300ms")
	deploy(t, p, "hi", testmodules.WAT(t, "hello"), "")
	res := do(t, "POST", p.url+"/v1/lambdas/hi/tasks?at=1500ms", nil)
	if res.status != http.StatusCreated {
		t.Fatalf("schedule for later: %d %s", res.status, res.body)
	}
	got := finish(t, p, decodeTask(t, res.body).GetId(), 20*time.Second)
	xa, ea, sa := got.GetExecuteAt().AsTime(), got.GetEnqueuedAt().AsTime(), got.GetStartedAt().AsTime()
	if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || sa.Before(xa) {
		t.Fatalf("task %s: started %v after its execute_at, want >= 0", got.GetState(), sa.Sub(xa))
	}
	if ea.Before(xa.Add(-300*time.Millisecond)) || !ea.Before(xa) {
		t.Fatalf("enqueued %v after its execute_at, want within the 300ms lead before it", ea.Sub(xa))
	}
	// A task scheduled for an hour ago is due when it is created: its
	// start lateness and pickup latency count from then, not the hour.
	deploy(t, p, "backfill", testmodules.WAT(t, "hello"), "")
	res = do(t, "POST", p.url+"/v1/lambdas/backfill/tasks?at=-1h", nil)
	if res.status != http.StatusCreated {
		t.Fatalf("schedule for an hour ago: %d %s", res.status, res.body)
	}
	if got := finish(t, p, decodeTask(t, res.body).GetId(), 20*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("task scheduled for an hour ago: %s", got.GetState())
	}
	metrics := string(do(t, "GET", p.url+"/metrics", nil).body)
	if want := `atf_task_start_lateness_seconds_count{atf_lambda_name="hi"`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	for _, name := range []string{"atf_task_start_lateness_seconds_sum", "atf_task_pickup_latency_seconds_sum"} {
		sum, ok := metricSum(metrics, name, `atf_lambda_name="backfill"`)
		if !ok || sum > 10 {
			t.Errorf("%s for the task scheduled an hour ago: %v (found %v), want well under 10s", name, sum, ok)
		}
	}
}

// metricSum reads the value of the first series of name on a /metrics
// page whose labels contain label.
func metricSum(page, name, label string) (float64, bool) {
	for _, line := range strings.Split(page, "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok || !strings.Contains(rest, label) {
			continue
		}
		_, v, _ := strings.Cut(rest, "} ")
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return f, err == nil
	}
	return 0, false
}

// TestRedisCluster runs the platform (`atf dev --redis-cluster`) on a Redis
// Cluster of three real redis-server masters: every partition's scripts
// run on the node holding its slot, queues and leases on theirs.
func TestRedisCluster(t *testing.T) {
	cc := redistest.StartCluster(t, 3)
	addrs := cc.Options().Addrs
	url := "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	p := start(t, true, "dev", "--listen", "127.0.0.1:0", "--redis", url, "--redis-cluster", "--data", t.TempDir(), "--examples", "")

	deploy(t, p, "hi", testmodules.WAT(t, "hello"), "")
	// Due later: the consumer owning its partition enqueues it.
	res := do(t, "POST", p.url+"/v1/lambdas/hi/tasks?at=1500ms&key=later", nil)
	if res.status != http.StatusCreated {
		t.Fatalf("schedule for later: %d %s", res.status, res.body)
	}
	later := decodeTask(t, res.body)
	if res := do(t, "POST", p.url+"/v1/lambdas/hi/tasks?at=1500ms&key=later", nil); res.status != http.StatusOK || !bytes.Contains(res.body, []byte(later.GetId())) {
		t.Fatalf("the same key again: %d %s, want 200 with %s", res.status, res.body, later.GetId())
	}
	if got := finish(t, p, later.GetId(), 20*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || got.GetStartedAt().AsTime().Before(got.GetExecuteAt().AsTime()) {
		t.Fatalf("task due later: %v", got)
	}
	batchGatingWatchCron(t, p)

	// A batch over many partitions: one script per partition, each on its
	// node. The partitions' keys are then on every node (each holds 4 of
	// the 16 partitions or more).
	items := make([]string, 100)
	for i := range items {
		items[i] = fmt.Sprintf(`{"payloadText":"%d"}`, i)
	}
	res = do(t, "POST", p.url+"/v1/lambdas/hi/tasks:batch", []byte("["+strings.Join(items, ",")+"]"))
	var batch atfv1.ScheduleBatchResponse
	if err := protojson.Unmarshal(res.body, &batch); err != nil || res.status != http.StatusCreated || len(batch.GetResults()) != len(items) {
		t.Fatalf("batch of %d: %d %v %.200s", len(items), res.status, err, res.body)
	}
	for _, r := range batch.GetResults() {
		if got := finish(t, p, r.GetTask().GetId(), 30*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
			t.Fatalf("batch task: %v", got)
		}
	}
	var (
		mu      sync.Mutex
		holding []string
	)
	if err := cc.ForEachMaster(t.Context(), func(ctx context.Context, node *redis.Client) error { // on each node at once
		n, err := node.DBSize(ctx).Result()
		if n > 0 {
			mu.Lock()
			holding = append(holding, node.Options().Addr)
			mu.Unlock()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(holding) < 3 {
		t.Errorf("keys on %d of 3 nodes (%v): the test did not spread over the cluster", len(holding), holding)
	}
}

func batchGatingWatchCron(t *testing.T, p *proc) {
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
	// The pushes the frontend made are counted with the consumer's: the
	// batch's, due at once, and the resumed task's.
	metrics := string(do(t, "GET", p.url+"/metrics", nil).body)
	for _, reason := range []string{"due", "resume"} {
		if want := `atf_tasks_enqueued_total{atf_enqueue_reason="` + reason + `",atf_lambda_name="hi"`; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
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
