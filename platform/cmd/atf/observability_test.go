package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/redistest"
)

var healthRE = regexp.MustCompile(`health on (http://\S+)`)

// TestObservability checks what an operator reads without a tracing
// backend: a task's logs (REST and Connect), /metrics, /healthz, /readyz
// and gRPC health on the server and on an executor (--health-listen), and
// trace ids on the executor's log lines.
func TestObservability(t *testing.T) {
	rs := redistest.StartServer(t)
	srv := start(t, true, "server", "--listen", "127.0.0.1:0", "--redis", rs.URL(), "--roles", "frontend,consumer,controller,hsc")
	ex := start(t, false, "executor", "--server", srv.url, "--cache-dir", t.TempDir(), "--health-listen", "127.0.0.1:0", "--log-level", "debug")
	deploy(t, srv, "exit", testmodules.Build(t, "exit"), "")

	task := schedule(t, srv, "exit", []byte("1"))
	got := finish(t, srv, task.GetId(), 20*time.Second)
	if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE {
		t.Fatalf("state %s", got.GetState())
	}
	if res := do(t, "GET", srv.url+"/v1/tasks/"+task.GetId()+"/logs", nil); res.status != 200 || string(res.body) != "--- attempt 1: fatal ---\nbye\n" {
		t.Errorf("GET logs: %d %q, want the module's stderr under the attempt's header", res.status, res.body)
	}
	client := atfv1connect.NewTaskServiceClient(http.DefaultClient, srv.url, connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logs, err := client.GetTaskLogs(ctx, &atfv1.GetTaskLogsRequest{Id: task.GetId()})
	if err != nil || !strings.Contains(logs.GetLogs(), "bye") {
		t.Errorf("GetTaskLogs: %v %q", err, logs.GetLogs())
	}

	// Each attempt's logs follow the one before, under its own header: an
	// attempt that logged nothing is not shown the previous one's.
	deploy(t, srv, "flaky", testmodules.Build(t, "flaky"), "max_attempts=3&retry_backoff=20ms")
	flaky := schedule(t, srv, "flaky", []byte("2"))
	if got := finish(t, srv, flaky.GetId(), 20*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("flaky ended %s", got.GetState())
	}
	want := "--- attempt 1: retry ---\nattempt 1 < 2, try again\n--- attempt 2: success ---\n"
	if res := do(t, "GET", srv.url+"/v1/tasks/"+flaky.GetId()+"/logs", nil); string(res.body) != want {
		t.Errorf("flaky's logs %q, want %q", res.body, want)
	}
	// The atf_v1 log calls are kept with the task, with their level.
	deploy(t, srv, "watprogress", buildExample(t, "watprogress"), "")
	wp := schedule(t, srv, "watprogress", nil)
	finish(t, srv, wp.GetId(), 20*time.Second)
	if res := do(t, "GET", srv.url+"/v1/tasks/"+wp.GetId()+"/logs", nil); string(res.body) != "--- attempt 1: success ---\n[info] hello from wat\n" {
		t.Errorf("watprogress's logs %q, want its log call", res.body)
	}

	m := do(t, "GET", srv.url+"/metrics", nil)
	for _, want := range []string{`atf_tasks_scheduled_total{atf_lambda_name="exit"`, `atf_queue_depth{atf_lambda_name="exit",atf_namespace="default",atf_task_priority="0"`, `rpc_server_`} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("server /metrics lacks %s", want)
		}
	}
	health := grpchealth.NewClient(http.DefaultClient, srv.url, connect.WithGRPC())
	for service, want := range map[string]grpchealth.Status{"": grpchealth.StatusServing, atfv1connect.TaskServiceName: grpchealth.StatusServing} {
		st, err := health.Check(ctx, &grpchealth.CheckRequest{Service: service})
		if err != nil || st.Status != want {
			t.Errorf("server gRPC health of %q: %v %v", service, st, err)
		}
	}

	var exURL string
	for deadline := time.Now().Add(10 * time.Second); exURL == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := healthRE.FindStringSubmatch(ex.logs.String()); m != nil {
			exURL = m[1]
		}
	}
	if exURL == "" {
		t.Fatalf("the executor did not say where its health endpoint is:\n%s", ex.logs)
	}
	for _, c := range []struct{ path, want string }{
		{"/healthz", "ok"}, {"/readyz", "ready"},
		{"/metrics", `atf_tasks_finished_total{atf_lambda_name="exit",atf_task_outcome="fatal"`},
		{"/metrics", `atf_task_cpu_time_seconds_count{atf_lambda_name="exit"`},
	} {
		if res := do(t, "GET", exURL+c.path, nil); res.status != 200 || !strings.Contains(string(res.body), c.want) {
			t.Errorf("executor %s: %d, lacks %q", c.path, res.status, c.want)
		}
	}
	st, err := grpchealth.NewClient(http.DefaultClient, exURL, connect.WithGRPC()).Check(ctx, &grpchealth.CheckRequest{})
	if err != nil || st.Status != grpchealth.StatusServing {
		t.Errorf("executor gRPC health: %v %v", st, err)
	}
	// Tracing is off, yet the executor's lines about the task carry its
	// trace id.
	if !strings.Contains(ex.logs.String(), "trace_id="+got.GetTraceId()) {
		t.Errorf("the executor's log lines lack trace_id=%s:\n%s", got.GetTraceId(), ex.logs)
	}
}
