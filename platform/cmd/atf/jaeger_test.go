package main

// The tracing end-to-end test: Jaeger v2 (built from tools/jaeger) as the
// OpenTelemetry backend, `atf server` and `atf executor` exporting to it
// over OTLP, one task scheduled with a known traceparent, and its trace
// read back from Jaeger's query API.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/redistest"
)

// buildJaeger builds Jaeger from its tools module, unless ATF_JAEGER_BIN
// names a binary built already (.ci/run builds it before `make test`: a
// cold build takes minutes). On CI a failure fails the test; elsewhere (no
// network, no module cache) it skips.
func buildJaeger(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("ATF_JAEGER_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("ATF_JAEGER_BIN: %v", err)
		}
		return bin
	}
	if testing.Short() {
		t.Skip("-short: not building Jaeger")
	}
	bin := filepath.Join(t.TempDir(), "jaeger")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = "../../../tools/jaeger"
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot build Jaeger from tools/jaeger: %v\n%s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Logf("jaeger built in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// startJaeger runs Jaeger and returns its OTLP/HTTP endpoint and its query
// API's base URL.
func startJaeger(t *testing.T) (otlp, query string) {
	t.Helper()
	bin := buildJaeger(t)
	otlpPort, httpPort, grpcPort := freePort(t), freePort(t), freePort(t)
	cfg, err := filepath.Abs("testdata/jaeger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", "file:"+cfg)
	cmd.Env = append(os.Environ(),
		"JAEGER_OTLP_HTTP_PORT="+otlpPort, "JAEGER_QUERY_HTTP_PORT="+httpPort, "JAEGER_QUERY_GRPC_PORT="+grpcPort)
	logs := &redistest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("jaeger did not stop within 15s of SIGINT\n%s", logs)
		}
		if t.Failed() {
			t.Logf("jaeger logs:\n%s", logs)
		}
	})
	query = "http://127.0.0.1:" + httpPort
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(query + "/api/services")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("jaeger exited: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger's query API did not answer in 30s\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "http://127.0.0.1:" + otlpPort, query
}

// jaegerTrace is the part of Jaeger's /api/traces/{id} answer the test reads.
type jaegerTrace struct {
	TraceID string       `json:"traceID"`
	Spans   []jaegerSpan `json:"spans"`
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	Logs []struct {
		Fields []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"fields"`
	} `json:"logs"`
}

func (s jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

func (s jaegerSpan) events(name string) int {
	n := 0
	for _, l := range s.Logs {
		for _, f := range l.Fields {
			if f.Key == "event" && f.Value == name {
				n++
			}
		}
	}
	return n
}

// fetchTrace polls Jaeger until the trace holds every span named in want
// (count at least), or fails after within.
func fetchTrace(t *testing.T, query, traceID string, want map[string]int, within time.Duration) jaegerTrace {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		res, err := http.Get(query + "/api/traces/" + traceID)
		if err == nil {
			var body struct {
				Data []jaegerTrace `json:"data"`
			}
			err = json.NewDecoder(res.Body).Decode(&body)
			res.Body.Close()
			if err == nil && len(body.Data) > 1 {
				t.Fatalf("Jaeger holds %d traces for trace id %s, want one", len(body.Data), traceID)
			}
			if err == nil && len(body.Data) == 1 {
				got := map[string]int{}
				var names []string
				for _, s := range body.Data[0].Spans {
					got[s.OperationName]++
					names = append(names, s.OperationName)
				}
				complete := true
				for name, n := range want {
					complete = complete && got[name] >= n
				}
				if complete {
					return body.Data[0]
				}
				last = strings.Join(names, ", ")
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s lacks spans after %s: want %v, have [%s]", traceID, within, want, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestTraceInJaeger(t *testing.T) {
	otlp, query := startJaeger(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	t.Setenv("OTEL_SERVICE_NAME", "atf-e2e")
	rs := redistest.StartServer(t)
	srv := start(t, true, "server", "--listen", "127.0.0.1:0", "--redis", rs.URL())
	start(t, false, "executor", "--server", srv.url, "--cache-dir", t.TempDir(), "--heartbeat-interval", "200ms", "--heartbeat-timeout", "2s")
	deploy(t, srv, "wat-hello", testmodules.WAT(t, "hello"), "")

	// The caller's span: the task must join its trace, under it.
	const traceID, callerSpan = "4bf92f3577b34a0e9ff1e7ad0e0d3c01", "00f067aa0ba902b7"
	// at=300ms: the store consumer, not the frontend, enqueues it.
	res := do(t, "POST", srv.url+"/v1/lambdas/wat-hello/tasks?at=300ms", nil, "traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	if res.status != http.StatusCreated {
		t.Fatalf("schedule: %d %s", res.status, res.body)
	}
	task := decodeTask(t, res.body)
	if task.GetTraceId() != traceID {
		t.Fatalf("task traceId %q, want the caller's %s", task.GetTraceId(), traceID)
	}
	if got := finish(t, srv, task.GetId(), 20*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("task ended %s: %v", got.GetState(), got.GetError())
	}

	tr := fetchTrace(t, query, traceID, map[string]int{
		"atf.schedule": 1, "atf.enqueue": 1, "atf.claim": 1, "atf.execute": 1, "atf.set_result": 1,
	}, 30*time.Second)
	byID := map[string]jaegerSpan{}
	byName := map[string]jaegerSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
		byName[s.OperationName] = s
	}
	// ancestor reports whether a is an ancestor of s.
	ancestor := func(a, s jaegerSpan) bool {
		for p := s.parent(); p != ""; p = byID[p].parent() {
			if p == a.SpanID {
				return true
			}
		}
		return false
	}
	schedule := byName["atf.schedule"]
	if schedule.parent() != callerSpan {
		t.Errorf("atf.schedule's parent is %q, want the caller's span %s", schedule.parent(), callerSpan)
	}
	for _, name := range []string{"atf.enqueue", "atf.claim", "atf.execute"} {
		if p := byName[name].parent(); p != schedule.SpanID {
			t.Errorf("%s's parent is %q (%s), want atf.schedule %s", name, p, byID[p].OperationName, schedule.SpanID)
		}
	}
	execute := byName["atf.execute"]
	if !ancestor(execute, byName["atf.set_result"]) {
		t.Errorf("atf.set_result is not under atf.execute")
	}
	for key, want := range map[string]string{
		"atf.task.id": task.GetId(), "atf.lambda.name": "wat-hello", "atf.task.attempt": "1",
		"atf.task.outcome": "success", "atf.task.priority": "0",
	} {
		if got := execute.tag(key); got != want {
			t.Errorf("atf.execute tag %s = %q, want %q", key, got, want)
		}
	}
	if byName["atf.enqueue"].tag("atf.enqueue.reason") != "due" {
		t.Errorf("atf.enqueue reason %q, want due", byName["atf.enqueue"].tag("atf.enqueue.reason"))
	}
	for _, s := range tr.Spans {
		if strings.HasPrefix(s.OperationName, "atf.v1.ControllerService/NextWork") {
			t.Errorf("a NextWork poll joined the task's trace")
		}
	}
	if cpu, err := strconv.ParseFloat(execute.tag("atf.task.cpu_seconds"), 64); err != nil || cpu <= 0 || cpu > 5 {
		t.Errorf("atf.execute's atf.task.cpu_seconds = %q, want a CPU time", execute.tag("atf.task.cpu_seconds"))
	}

	// A lambda's own spans (atf_v1 span_start/span_end) are children of
	// its execute span, its log calls events of it; a task due now, pushed
	// by the frontend itself, has its atf.enqueue span too.
	deploy(t, srv, "watprogress", buildExample(t, "watprogress"), "")
	const guestTrace = "4bf92f3577b34a0e9ff1e7ad0e0d3c04"
	res = do(t, "POST", srv.url+"/v1/lambdas/watprogress/tasks", nil, "traceparent", "00-"+guestTrace+"-"+callerSpan+"-01")
	if res.status != http.StatusCreated {
		t.Fatalf("schedule watprogress: %d %s", res.status, res.body)
	}
	if got := finish(t, srv, decodeTask(t, res.body).GetId(), 20*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("watprogress ended %s: %v", got.GetState(), got.GetError())
	}
	tr = fetchTrace(t, query, guestTrace, map[string]int{
		"atf.schedule": 1, "atf.enqueue": 1, "atf.claim": 1, "atf.execute": 1, "step": 1, "atf.set_result": 1,
	}, 30*time.Second)
	byID, byName = map[string]jaegerSpan{}, map[string]jaegerSpan{}
	for _, s := range tr.Spans {
		byID[s.SpanID] = s
		byName[s.OperationName] = s
	}
	schedule, execute = byName["atf.schedule"], byName["atf.execute"]
	if schedule.parent() != callerSpan {
		t.Errorf("watprogress: atf.schedule's parent is %q, want the caller's span %s", schedule.parent(), callerSpan)
	}
	for _, name := range []string{"atf.enqueue", "atf.claim", "atf.execute"} {
		if p := byName[name].parent(); p != schedule.SpanID {
			t.Errorf("watprogress: %s's parent is %q (%s), want atf.schedule %s", name, p, byID[p].OperationName, schedule.SpanID)
		}
	}
	if enq := byName["atf.enqueue"]; enq.tag("atf.enqueue.by") != "frontend" || enq.tag("atf.enqueue.reason") != "due" {
		t.Errorf("watprogress: atf.enqueue by %q reason %q, want frontend, due", enq.tag("atf.enqueue.by"), enq.tag("atf.enqueue.reason"))
	}
	step := byName["step"]
	if step.parent() != execute.SpanID {
		t.Errorf("the lambda's span \"step\" has parent %q (%s), want atf.execute %s", step.parent(), byID[step.parent()].OperationName, execute.SpanID)
	}
	if step.tag("wat.step") != "half" {
		t.Errorf("the lambda's span lacks its attribute wat.step=half: %+v", step.Tags)
	}
	if execute.events("log") != 1 {
		t.Errorf("watprogress's atf.execute has %d log events, want its one log call", execute.events("log"))
	}

	// Each task of a batch is scheduled as if alone: its own atf.schedule
	// span under the caller's, and its own execute span under that.
	const batchTrace = "4bf92f3577b34a0e9ff1e7ad0e0d3c05"
	res = do(t, "POST", srv.url+"/v1/lambdas/wat-hello/tasks:batch", []byte(`[{"payloadText":"a"},{"payloadText":"b"}]`),
		"traceparent", "00-"+batchTrace+"-"+callerSpan+"-01")
	if res.status != http.StatusCreated {
		t.Fatalf("schedule batch: %d %s", res.status, res.body)
	}
	tr = fetchTrace(t, query, batchTrace, map[string]int{
		"atf.schedule": 2, "atf.enqueue": 2, "atf.claim": 2, "atf.execute": 2, "atf.set_result": 2,
	}, 30*time.Second)
	schedules := map[string]bool{}
	for _, s := range tr.Spans {
		if s.OperationName == "atf.schedule" {
			schedules[s.SpanID] = true
			if s.parent() != callerSpan {
				t.Errorf("a batch task's atf.schedule has parent %q, want the caller's span %s", s.parent(), callerSpan)
			}
		}
	}
	executes := map[string]bool{}
	for _, s := range tr.Spans {
		if s.OperationName == "atf.execute" {
			if !schedules[s.parent()] {
				t.Errorf("a batch task's atf.execute has parent %q, not an atf.schedule", s.parent())
			}
			executes[s.parent()] = true
		}
	}
	if len(executes) != 2 {
		t.Errorf("the batch's two execute spans share an atf.schedule parent")
	}

	// A task that runs into its 1s timeout: heartbeats are events of its
	// execute span, and the limit it hit is an attribute.
	deploy(t, srv, "loop", testmodules.Build(t, "loop"), "timeout=1s&max_attempts=1")
	const loopTrace = "4bf92f3577b34a0e9ff1e7ad0e0d3c02"
	res = do(t, "POST", srv.url+"/v1/lambdas/loop/tasks", nil, "traceparent", "00-"+loopTrace+"-"+callerSpan+"-01")
	if res.status != http.StatusCreated {
		t.Fatalf("schedule loop: %d %s", res.status, res.body)
	}
	finish(t, srv, decodeTask(t, res.body).GetId(), 20*time.Second)
	tr = fetchTrace(t, query, loopTrace, map[string]int{"atf.execute": 1, "atf.set_result": 1}, 30*time.Second)
	for _, s := range tr.Spans {
		if s.OperationName != "atf.execute" {
			continue
		}
		if s.events("heartbeat") == 0 {
			t.Errorf("the loop task's atf.execute has no heartbeat event")
		}
		if got := s.tag("atf.task.limit"); got != "timeout=1s" {
			t.Errorf("the loop task's atf.execute limit tag %q, want timeout=1s", got)
		}
	}

	// A retry is a new execute span in the same trace, linked to the
	// attempt before it.
	deploy(t, srv, "flaky", testmodules.Build(t, "flaky"), "max_attempts=3&retry_backoff=20ms")
	const flakyTrace = "4bf92f3577b34a0e9ff1e7ad0e0d3c03"
	res = do(t, "POST", srv.url+"/v1/lambdas/flaky/tasks", []byte("2"), "traceparent", "00-"+flakyTrace+"-"+callerSpan+"-01")
	if res.status != http.StatusCreated {
		t.Fatalf("schedule flaky: %d %s", res.status, res.body)
	}
	if got := finish(t, srv, decodeTask(t, res.body).GetId(), 20*time.Second); got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("flaky ended %s: %v", got.GetState(), got.GetError())
	}
	tr = fetchTrace(t, query, flakyTrace, map[string]int{"atf.execute": 2, "atf.set_result": 2}, 30*time.Second)
	attempts := map[string]jaegerSpan{}
	for _, s := range tr.Spans {
		if s.OperationName == "atf.execute" {
			attempts[s.tag("atf.task.attempt")] = s
		}
	}
	first, second := attempts["1"], attempts["2"]
	if first.SpanID == "" || second.SpanID == "" {
		t.Fatalf("want execute spans of attempts 1 and 2, have %v", attempts)
	}
	linked := false
	for _, r := range second.References {
		linked = linked || (r.RefType == "FOLLOWS_FROM" && r.SpanID == first.SpanID)
	}
	if !linked {
		t.Errorf("attempt 2's execute span does not link attempt 1's (%s): %+v", first.SpanID, second.References)
	}
	if first.tag("atf.task.outcome") != "retry" || second.tag("atf.task.outcome") != "success" {
		t.Errorf("outcomes %q, %q; want retry, success", first.tag("atf.task.outcome"), second.tag("atf.task.outcome"))
	}

	// Metrics: /metrics on the server port counts what just happened.
	m := do(t, "GET", srv.url+"/metrics", nil)
	for _, want := range []string{"atf_tasks_scheduled_total", "atf_tasks_enqueued_total", "atf_task_pickup_latency_seconds_bucket", "atf_queue_depth"} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
