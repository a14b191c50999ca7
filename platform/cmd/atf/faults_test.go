package main

// ATF's guarantees under real faults: real atf processes killed, stopped
// and restarted, a real redis-server restarted. Short timeouts keep each
// test to seconds: heartbeats every 200ms, a running task re-runs after
// 1.5s without one.

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/embedded"
	"github.com/atfhq/atf/platform/redistest"
)

var fastTimeouts = []string{"--heartbeat-interval", "200ms", "--heartbeat-timeout", "1500ms", "--claim-timeout", "1500ms", "--enqueue-timeout", "1500ms"}

func startServer(t *testing.T, redisURL string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"server", "--listen", "127.0.0.1:0", "--redis", redisURL}, fastTimeouts...)
	return start(t, true, append(args, extra...)...)
}

func startExecutor(t *testing.T, serverURL string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"executor", "--server", serverURL, "--cache-dir", t.TempDir()}, fastTimeouts...)
	return start(t, false, append(args, extra...)...)
}

// kill sends sig and, for SIGKILL, waits for the process to be gone.
func (p *proc) kill(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if sig == syscall.SIGKILL {
		<-p.done
		p.cmd.ProcessState = &os.ProcessState{} // stop() need not stop it
	}
}

func waitState(t *testing.T, p *proc, id string, want atfv1.TaskState, within time.Duration) *atfv1.Task {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		res := do(t, "GET", p.url+"/v1/tasks/"+id, nil)
		task := decodeTask(t, res.body)
		if task.GetState() == want {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s after %s, want %s", id, task.GetState(), within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestExecutorKilledMidTask: kill -9 an executor while it runs a task; the
// task runs again on another executor after the heartbeat timeout and
// succeeds, its attempt counted.
func TestExecutorKilledMidTask(t *testing.T) {
	t.Parallel()
	rs := redistest.StartServer(t)
	srv := startServer(t, rs.URL())
	deploy(t, srv, "sleep", testmodules.Build(t, "sleep"), "timeout=30s&max_attempts=3")
	ex1 := startExecutor(t, srv.url)
	task := schedule(t, srv, "sleep", []byte("3000"))
	waitState(t, srv, task.GetId(), atfv1.TaskState_TASK_STATE_PROCESSING, 20*time.Second)
	ex1.kill(t, syscall.SIGKILL)
	startExecutor(t, srv.url)
	got := finish(t, srv, task.GetId(), 30*time.Second)
	if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || got.GetAttempt() != 2 || string(got.GetOutput()) != "slept attempt=2" {
		t.Fatalf("got %s attempt %d output %q error %v", got.GetState(), got.GetAttempt(), got.GetOutput(), got.GetError())
	}
}

// TestStalledExecutorCannotOverwrite: an executor stopped (SIGSTOP) past
// its lease loses the task to another; resumed, it cannot report over the
// new owner's result.
func TestStalledExecutorCannotOverwrite(t *testing.T) {
	t.Parallel()
	rs := redistest.StartServer(t)
	srv := startServer(t, rs.URL())
	deploy(t, srv, "sleep", testmodules.Build(t, "sleep"), "timeout=30s&max_attempts=3")
	ex1 := startExecutor(t, srv.url)
	task := schedule(t, srv, "sleep", []byte("1000"))
	waitState(t, srv, task.GetId(), atfv1.TaskState_TASK_STATE_PROCESSING, 20*time.Second)
	ex1.kill(t, syscall.SIGSTOP)
	startExecutor(t, srv.url)
	got := finish(t, srv, task.GetId(), 30*time.Second)
	// The stalled executor's module has long finished sleeping: resumed, it
	// tries to report attempt 1's result with its stale token.
	ex1.kill(t, syscall.SIGCONT)
	time.Sleep(1500 * time.Millisecond)
	after := decodeTask(t, do(t, "GET", srv.url+"/v1/tasks/"+task.GetId(), nil).body)
	if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || after.GetAttempt() != 2 || string(after.GetOutput()) != "slept attempt=2" {
		t.Fatalf("after the stalled executor resumed: %s attempt %d output %q", after.GetState(), after.GetAttempt(), after.GetOutput())
	}
	if !after.GetFinishedAt().AsTime().Equal(got.GetFinishedAt().AsTime()) {
		t.Fatalf("the task changed after it finished: %v -> %v", got.GetFinishedAt().AsTime(), after.GetFinishedAt().AsTime())
	}
}

// TestLostQueueEntriesAndKilledConsumer: queue entries deleted by hand (as
// when a controller dies after popping, before claiming) and a consumer
// killed with tasks due: every task still finishes.
func TestLostQueueEntriesAndKilledConsumer(t *testing.T) {
	t.Parallel()
	rs := redistest.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	// Frontend, controller and HSC in one process; two consumers apart.
	srv := startServer(t, rs.URL(), "--roles", "frontend,controller,hsc")
	c1 := startServer(t, rs.URL(), "--roles", "consumer")
	startServer(t, rs.URL(), "--roles", "consumer")
	deploy(t, srv, "echo", testmodules.Build(t, "echo"), "")

	// Lost queue entries: schedule with no executor running, then empty
	// the queue by hand.
	var ids []string
	for i := range 10 {
		ids = append(ids, schedule(t, srv, "echo", []byte(strconv.Itoa(i))).GetId())
	}
	n, err := rdb.Del(context.Background(), "atf:{q}:default:echo:0").Result()
	if err != nil || n != 1 {
		t.Fatalf("deleting the queue: %d %v", n, err)
	}
	// Due in a moment, while consumer 1 dies with half the partitions.
	for i := range 20 {
		res := do(t, "POST", srv.url+"/v1/lambdas/echo/tasks?at=700ms", []byte(strconv.Itoa(100+i)))
		if res.status != http.StatusCreated {
			t.Fatalf("schedule: %d %s", res.status, res.body)
		}
		ids = append(ids, decodeTask(t, res.body).GetId())
	}
	c1.kill(t, syscall.SIGKILL)
	startExecutor(t, srv.url)
	for _, id := range ids {
		got := finish(t, srv, id, 30*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
			t.Fatalf("task %s: %s %v", id, got.GetState(), got.GetError())
		}
	}
}

// TestRedisRestartLosesNoAcceptedTask: redis-server with appendfsync
// always restarted during a load; every task whose Schedule was accepted
// finishes.
func TestRedisRestartLosesNoAcceptedTask(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rs := redistest.StartServerWith(t, embedded.Options{Dir: dir, AppendFsync: "always"})
	addr := rs.Addr()
	// Heartbeats every second: an executor survives a restart shorter than
	// three of them.
	args := []string{"--heartbeat-interval", "1s", "--heartbeat-timeout", "5s", "--claim-timeout", "3s", "--enqueue-timeout", "3s"}
	srv := start(t, true, append([]string{"server", "--listen", "127.0.0.1:0", "--redis", rs.URL()}, args...)...)
	start(t, false, append([]string{"executor", "--server", srv.url, "--cache-dir", t.TempDir()}, args...)...)
	deploy(t, srv, "echo", testmodules.Build(t, "echo"), "max_attempts=10")

	var (
		mu       sync.Mutex
		accepted []string
		refused  int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				res, err := http.Post(srv.url+"/v1/lambdas/echo/tasks", "text/plain", strings.NewReader(fmt.Sprintf("%d-%d", w, i)))
				if err != nil {
					t.Error(err)
					return
				}
				var b strings.Builder
				_, _ = bufio.NewReader(res.Body).WriteTo(&b)
				res.Body.Close()
				mu.Lock()
				if res.StatusCode == http.StatusCreated {
					accepted = append(accepted, decodeTask(t, []byte(b.String())).GetId())
				} else {
					refused++
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rs.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	rs2 := redistest.StartServerWith(t, embedded.Options{Dir: dir, Addr: addr, AppendFsync: "always"})
	_ = rs2
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d schedules accepted, %d refused while redis restarted", len(accepted), refused)
	if len(accepted) < 50 {
		t.Fatalf("only %d tasks accepted: the load did not run", len(accepted))
	}
	for _, id := range accepted {
		got := finish(t, srv, id, 60*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
			t.Fatalf("accepted task %s ended %s: %v", id, got.GetState(), got.GetError())
		}
	}
}

// TestNoConcurrentExecutionUnderKills is the invariant run: thousands of
// tasks, executors killed at random and restarted; every task succeeds at
// least once, and no two executions of one task overlap (read from the
// executors' execution logs).
func TestNoConcurrentExecutionUnderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("invariant run skipped in -short mode")
	}
	t.Parallel()
	rs := redistest.StartServer(t)
	srv := startServer(t, rs.URL())
	deploy(t, srv, "sleep", testmodules.Build(t, "sleep"), "timeout=30s&max_attempts=20")
	logDir := t.TempDir()
	const executors = 3
	exs := make([]*proc, executors)
	logs := make([]string, executors)
	killedAt := map[string]int64{} // log file -> when its executor was dead
	launched := 0
	launch := func(i int) {
		launched++
		logs[i] = filepath.Join(logDir, fmt.Sprintf("exec-%d.log", launched))
		exs[i] = startExecutor(t, srv.url, "--slots", "16", "--execution-log", logs[i])
	}
	for i := range executors {
		launch(i)
	}
	const tasks = 2000
	ids := make([]string, 0, tasks)
	for i := range tasks {
		ids = append(ids, schedule(t, srv, "sleep", []byte(strconv.Itoa(5+i%40))).GetId())
	}
	// Kill an executor at random every 700ms, five times, each replaced.
	for range 5 {
		time.Sleep(700 * time.Millisecond)
		i := rand.IntN(executors)
		exs[i].kill(t, syscall.SIGKILL)
		killedAt[logs[i]] = time.Now().UnixNano()
		launch(i)
	}
	for _, id := range ids {
		if got := finish(t, srv, id, 90*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
			t.Fatalf("task %s: %s %v", id, got.GetState(), got.GetError())
		}
	}
	for _, p := range exs {
		p.stop(t)
	}
	checkNoOverlap(t, logDir, killedAt, ids)
}

// checkNoOverlap reads the execution logs and fails when two executions of
// one task overlap in time. An execution with a start and no end (its
// executor was killed) is taken to run until the kill.
func checkNoOverlap(t *testing.T, dir string, killedAt map[string]int64, ids []string) {
	t.Helper()
	type span struct {
		token      int64
		start, end int64
	}
	spans := map[string][]span{}
	open := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 5 {
				continue
			}
			id := fields[1]
			token, _ := strconv.ParseInt(fields[3], 10, 64)
			at, _ := strconv.ParseInt(fields[4], 10, 64)
			key := id + "/" + fields[3]
			switch fields[0] {
			case "start":
				end, killed := killedAt[f]
				if !killed {
					end = -1
				}
				spans[id] = append(spans[id], span{token: token, start: at, end: end})
				open[key] = len(spans[id]) - 1
			case "end":
				if i, ok := open[key]; ok {
					spans[id][i].end = at
				}
			}
		}
	}
	executions := 0
	for _, id := range ids {
		ss := spans[id]
		if len(ss) == 0 {
			t.Errorf("task %s has no recorded execution", id)
			continue
		}
		executions += len(ss)
		sort.Slice(ss, func(i, j int) bool { return ss[i].start < ss[j].start })
		for i := 1; i < len(ss); i++ {
			prev := ss[i-1]
			if prev.end < 0 {
				t.Errorf("task %s: execution with token %d never ended on a live executor", id, prev.token)
			} else if prev.end > ss[i].start {
				t.Errorf("task %s: execution with token %d (%d-%d) overlaps token %d starting %d", id, prev.token, prev.start, prev.end, ss[i].token, ss[i].start)
			}
			if prev.token >= ss[i].token {
				t.Errorf("task %s: fencing tokens not increasing: %d then %d", id, prev.token, ss[i].token)
			}
		}
	}
	t.Logf("%d tasks, %d executions (%d re-runs after kills)", len(ids), executions, executions-len(ids))
}

// TestCancelRunningTask: cancelling a PROCESSING task aborts its sandbox
// within a heartbeat interval; the task ends CANCELLED and is never
// retried.
func TestCancelRunningTask(t *testing.T) {
	t.Parallel()
	rs := redistest.StartServer(t)
	srv := startServer(t, rs.URL())
	deploy(t, srv, "sleep", testmodules.Build(t, "sleep"), "timeout=60s&max_attempts=3")
	startExecutor(t, srv.url)
	task := schedule(t, srv, "sleep", []byte("30000"))
	waitState(t, srv, task.GetId(), atfv1.TaskState_TASK_STATE_PROCESSING, 30*time.Second)
	if res := do(t, "DELETE", srv.url+"/v1/tasks/"+task.GetId(), nil); res.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", res.status, res.body)
	}
	got := finish(t, srv, task.GetId(), 10*time.Second)
	if got.GetState() != atfv1.TaskState_TASK_STATE_CANCELLED || got.GetAttempt() != 1 {
		t.Fatalf("got %s attempt %d, want CANCELLED on attempt 1", got.GetState(), got.GetAttempt())
	}
	if d := got.GetDuration().AsDuration(); d > 5*time.Second {
		t.Errorf("the sandbox ran %s after a cancel; it must stop within a heartbeat interval", d)
	}
	time.Sleep(2 * time.Second) // past the heartbeat timeout: nothing re-runs it
	if after := decodeTask(t, do(t, "GET", srv.url+"/v1/tasks/"+task.GetId(), nil).body); after.GetState() != atfv1.TaskState_TASK_STATE_CANCELLED || after.GetAttempt() != 1 {
		t.Fatalf("after the heartbeat timeout: %s attempt %d", after.GetState(), after.GetAttempt())
	}
}
