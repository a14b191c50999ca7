package main

// End-to-end tests of the atf binary: real processes, a real redis-server,
// real HTTP. They check what a new user checks (README's quick start, the
// Wasm contract, bad input) and what an operator relies on (roles in
// separate processes, clean shutdown).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/redistest"
)

var (
	binDir    string
	buildOnce sync.Once
	atfBin    string
	buildErr  error
)

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "atf-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// binary builds the atf command once per test
// process, on first use: benchmarks run in process and never need it.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		atfBin = filepath.Join(binDir, "atf")
		out, err := exec.Command("go", "build", "-o", atfBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build atf: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return atfBin
}

// proc is a running atf process.
type proc struct {
	cmd  *exec.Cmd
	url  string
	logs *redistest.SyncBuffer
	done chan error
}

var listeningRE = regexp.MustCompile(`listening on (http://\S+)|"addr":"([^"]+)"|addr=(\S+)`)

// start runs `atf args...`, waits until it says where it listens (when it
// serves), and stops it with SIGTERM at cleanup, failing the test when it
// does not exit cleanly.
func start(t testing.TB, serves bool, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	logs := &redistest.SyncBuffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: logs, done: make(chan error, 1)}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if m := listeningRE.FindStringSubmatch(line); m != nil && m[1] != "" {
				select {
				case urlc <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	if !serves {
		return p
	}
	select {
	case p.url = <-urlc:
	case err := <-p.done:
		t.Fatalf("atf %s exited before serving: %v\n%s", args[0], err, logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("atf %s did not start serving in 60s\n%s", args[0], logs)
	}
	return p
}

func (p *proc) stop(t testing.TB) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil && !t.Failed() {
			t.Errorf("atf exited with %v after SIGTERM\n%s", err, p.logs)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("atf did not stop within 30s of SIGTERM\n%s", p.logs)
	}
	if t.Failed() {
		t.Logf("atf logs:\n%s", p.logs)
	}
}

// startDev runs `atf dev` against a fresh redis-server.
func startDev(t *testing.T, extra ...string) *proc {
	t.Helper()
	rs := redistest.StartServer(t)
	args := append([]string{"dev", "--listen", "127.0.0.1:0", "--redis", rs.URL(), "--data", t.TempDir(), "--examples", ""}, extra...)
	return start(t, true, args...)
}

type response struct {
	status int
	body   []byte
	header http.Header
}

func do(t *testing.T, method, url string, body []byte, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, body: b, header: res.Header}
}

func deploy(t *testing.T, p *proc, name string, wasm []byte, query string) *atfv1.Lambda {
	t.Helper()
	res := do(t, "PUT", p.url+"/v1/lambdas/"+name+"?"+query, wasm)
	if res.status != http.StatusOK {
		t.Fatalf("deploy %s: %d %s", name, res.status, res.body)
	}
	var l atfv1.Lambda
	if err := protojson.Unmarshal(res.body, &l); err != nil {
		t.Fatalf("deploy %s: %v: %s", name, err, res.body)
	}
	return &l
}

func schedule(t *testing.T, p *proc, name string, payload []byte) *atfv1.Task {
	t.Helper()
	res := do(t, "POST", p.url+"/v1/lambdas/"+name+"/tasks", payload)
	if res.status != http.StatusCreated {
		t.Fatalf("schedule %s: %d %s", name, res.status, res.body)
	}
	return decodeTask(t, res.body)
}

func decodeTask(t *testing.T, b []byte) *atfv1.Task {
	t.Helper()
	var task atfv1.Task
	if err := protojson.Unmarshal(b, &task); err != nil {
		t.Fatalf("decode task: %v: %s", err, b)
	}
	return &task
}

// finish waits for a task to reach a terminal state.
func finish(t *testing.T, p *proc, id string, within time.Duration) *atfv1.Task {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		wait := min(time.Until(deadline), 30*time.Second).Round(time.Millisecond)
		res := do(t, "GET", fmt.Sprintf("%s/v1/tasks/%s?wait=%s", p.url, id, max(wait, 0)), nil)
		if res.status != http.StatusOK {
			t.Fatalf("get task %s: %d %s", id, res.status, res.body)
		}
		task := decodeTask(t, res.body)
		if task.GetFinishedAt() != nil {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after %s: %s", id, task.GetState(), within, res.body)
		}
	}
}

func TestQuickStartFromREADME(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- quickstart[^>]*-->\\s*```sh\\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no quickstart block")
	}
	script := string(m[1])
	if !strings.Contains(script, "@examples/hello/hello.wasm") {
		t.Fatalf("quickstart no longer deploys examples/hello: %s", script)
	}
	// make run builds examples/hello/hello.wasm in the tree; build it apart.
	examples := t.TempDir()
	if err := os.MkdirAll(filepath.Join(examples, "hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(examples, "hello", "hello.wasm"), "../../../examples/hello")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/hello: %v\n%s", err, out)
	}
	p := startDev(t)
	host := strings.TrimPrefix(p.url, "http://")
	script = strings.ReplaceAll(script, "localhost:8080", host)
	script = strings.ReplaceAll(script, "@examples/", "@"+examples+"/")
	// The first task after a deploy may compile the module; on a loaded
	// test machine that can take longer than the README's 5s.
	script = strings.ReplaceAll(script, "wait=5s", "wait=30s")
	out, err := exec.Command("bash", "-euo", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart failed: %v\n%s", err, out)
	}
	for _, want := range []string{`"name":"hello"`, `"state":"TASK_STATE_SUCCESS"`, `"attempt":1`, `"startedAt"`, `"finishedAt"`, `"traceId"`, `{"greeting":"Hello, Ada!"}`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("quickstart output lacks %s:\n%s", want, out)
		}
	}
}

// TestWasmContract is the new user's checklist: any WASI command deploys
// and runs, retries count, failures carry their reason, limits hold, the
// sandbox hides the host, bad input is refused clearly, and after all of
// it the platform still runs the next task.
func TestWasmContract(t *testing.T) {
	p := startDev(t)
	client := atfv1connect.NewTaskServiceClient(http.DefaultClient, p.url, connect.WithGRPC())

	t.Run("hand-written WAT succeeds within a second", func(t *testing.T) {
		deploy(t, p, "wat-hello", testmodules.WAT(t, "hello"), "")
		task := schedule(t, p, "wat-hello", nil)
		got := finish(t, p, task.GetId(), 5*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
			t.Fatalf("state %s, error %v", got.GetState(), got.GetError())
		}
		if lat := got.GetFinishedAt().AsTime().Sub(got.GetCreatedAt().AsTime()); lat > time.Second {
			t.Errorf("scheduled to finished took %s, want under 1s", lat)
		}
		out := do(t, "GET", p.url+"/v1/tasks/"+task.GetId()+"/output", nil)
		if string(out.body) != "hello from wat\n" {
			t.Errorf("output %q", out.body)
		}
	})
	t.Run("exit 75 twice then 0 succeeds on attempt 3", func(t *testing.T) {
		deploy(t, p, "flaky", testmodules.Build(t, "flaky"), "max_attempts=5&retry_backoff=20ms")
		task := schedule(t, p, "flaky", []byte("3"))
		got := finish(t, p, task.GetId(), 20*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || got.GetAttempt() != 3 || string(got.GetOutput()) != "ok attempt=3" {
			t.Fatalf("got state %s attempt %d output %q", got.GetState(), got.GetAttempt(), got.GetOutput())
		}
	})
	t.Run("exit 1 is fatal with stderr in the error", func(t *testing.T) {
		deploy(t, p, "exit", testmodules.Build(t, "exit"), "")
		got := finish(t, p, schedule(t, p, "exit", []byte("1")).GetId(), 20*time.Second)
		e := got.GetError()
		if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE || e.GetKind() != atfv1.ErrorKind_ERROR_KIND_EXIT || e.GetExitCode() != 1 || !strings.Contains(e.GetStderrTail(), "bye") {
			t.Fatalf("got state %s error %v", got.GetState(), e)
		}
		if got.GetAttempt() != 1 {
			t.Errorf("a fatal failure must not retry: attempt %d", got.GetAttempt())
		}
	})
	t.Run("infinite loop stops at its 1s timeout", func(t *testing.T) {
		deploy(t, p, "loop", testmodules.Build(t, "loop"), "timeout=1s&max_attempts=1")
		got := finish(t, p, schedule(t, p, "loop", nil).GetId(), 20*time.Second)
		e := got.GetError()
		if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE || e.GetKind() != atfv1.ErrorKind_ERROR_KIND_TIMEOUT || e.GetLimit() != "timeout=1s" || !e.GetAttemptsExhausted() {
			t.Fatalf("got state %s error %v", got.GetState(), e)
		}
		if d := got.GetDuration().AsDuration(); d < time.Second || d > 1500*time.Millisecond {
			t.Errorf("ran %s, want 1s-1.5s", d)
		}
	})
	t.Run("memory hog stops at memory_mb=16", func(t *testing.T) {
		deploy(t, p, "memhog", testmodules.Build(t, "memhog"), "memory_mb=16")
		got := finish(t, p, schedule(t, p, "memhog", nil).GetId(), 20*time.Second)
		e := got.GetError()
		if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE || e.GetKind() != atfv1.ErrorKind_ERROR_KIND_MEMORY_LIMIT || !strings.Contains(e.GetMessage(), "memory_mb=16") {
			t.Fatalf("got state %s error %v", got.GetState(), e)
		}
	})
	t.Run("stdout over max_output_bytes=1000 and stderr over max_log_bytes=5000 are fatal", func(t *testing.T) {
		l := deploy(t, p, "flood", testmodules.Build(t, "flood"), "max_output_bytes=1000")
		if l.GetMaxOutputBytes() != 1000 || l.GetMaxLogBytes() != 16<<20 {
			t.Errorf("deployed limits: max_output_bytes %d, max_log_bytes %d; want 1000 and the default 16 MiB", l.GetMaxOutputBytes(), l.GetMaxLogBytes())
		}
		got := finish(t, p, schedule(t, p, "flood", nil).GetId(), 20*time.Second)
		e := got.GetError()
		if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE || e.GetKind() != atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT ||
			e.GetLimit() != "max_output_bytes=1000" || !strings.Contains(e.GetMessage(), "max_output_bytes=1000") {
			t.Fatalf("got state %s error %v", got.GetState(), e)
		}
		deploy(t, p, "stderrflood", testmodules.Build(t, "stderrflood"), "max_log_bytes=5000")
		got = finish(t, p, schedule(t, p, "stderrflood", nil).GetId(), 20*time.Second)
		e = got.GetError()
		if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE || e.GetKind() != atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT ||
			e.GetLimit() != "max_log_bytes=5000" {
			t.Fatalf("got state %s error %v", got.GetState(), e)
		}
	})
	t.Run("the sandbox hides the host", func(t *testing.T) {
		deploy(t, p, "envprobe", testmodules.Build(t, "envprobe"), "")
		task := schedule(t, p, "envprobe", nil)
		got := finish(t, p, task.GetId(), 20*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
			t.Fatalf("state %s error %v", got.GetState(), got.GetError())
		}
		var probe struct {
			PasswdOpens bool     `json:"passwd_opens"`
			HomeSet     bool     `json:"home_set"`
			PathSet     bool     `json:"path_set"`
			Environ     []string `json:"environ"`
		}
		if err := json.Unmarshal(got.GetOutput(), &probe); err != nil {
			t.Fatalf("envprobe output: %v: %s", err, got.GetOutput())
		}
		if probe.PasswdOpens || probe.HomeSet || probe.PathSet {
			t.Errorf("the module sees the host: %s", got.GetOutput())
		}
		want := map[string]bool{"ATF_TASK_ID=" + task.GetId(): true, "ATF_LAMBDA=envprobe": true, "ATF_ATTEMPT=1": true}
		for _, kv := range probe.Environ {
			if strings.HasPrefix(kv, "TRACEPARENT=00-"+got.GetTraceId()) {
				continue
			}
			if !want[kv] {
				t.Errorf("the module sees %q", kv)
			}
			delete(want, kv)
		}
		if len(want) > 0 {
			t.Errorf("the module misses %v in %v", want, probe.Environ)
		}
	})
	t.Run("bad input is refused with a reason", func(t *testing.T) {
		junk := make([]byte, 4096)
		_, _ = rand.Read(junk)
		cases := []struct {
			name, method, path string
			body               []byte
			status             int
			want               string
		}{
			{"random bytes", "PUT", "/v1/lambdas/junk", junk, 400, "not a WebAssembly module"},
			{"foreign import", "PUT", "/v1/lambdas/bad", testmodules.WAT(t, "badimport"), 400, "env.foo"},
			{"empty module", "PUT", "/v1/lambdas/empty", nil, 400, "module is empty"},
			{"bad setting", "PUT", "/v1/lambdas/x?memory_mb=lots", testmodules.WAT(t, "hello"), 400, "memory_mb"},
			{"huge module", "PUT", "/v1/lambdas/huge", make([]byte, 64<<20+1), 413, "64 MiB"},
			{"unknown lambda", "POST", "/v1/lambdas/nope/tasks", nil, 404, `lambda \"nope\" not found`},
			{"huge payload", "POST", "/v1/lambdas/wat-hello/tasks", make([]byte, 1<<20+1), 413, "1 MiB"},
			{"bad priority", "POST", "/v1/lambdas/wat-hello/tasks?priority=12", nil, 400, "priority 12"},
			{"unknown task", "GET", "/v1/tasks/0a01jz5k7yq8m3x2n4p6r8t0v2", nil, 404, "not found"},
			{"malformed json", "POST", "/atf.v1.TaskService/Schedule", []byte(`{"lambda":`), 400, "invalid_argument"},
		}
		for _, c := range cases {
			res := do(t, c.method, p.url+c.path, c.body, "Content-Type", "application/json")
			if res.status != c.status || !strings.Contains(string(res.body), c.want) {
				t.Errorf("%s: got %d %s, want %d with %q", c.name, res.status, res.body, c.status, c.want)
			}
		}
		// Nothing bad was stored.
		for _, name := range []string{"junk", "bad", "empty", "x", "huge"} {
			if res := do(t, "GET", p.url+"/v1/lambdas/"+name, nil); res.status != 404 {
				t.Errorf("lambda %s exists after a refused deploy: %d %s", name, res.status, res.body)
			}
		}
	})
	t.Run("Connect JSON and gRPC", func(t *testing.T) {
		res := do(t, "POST", p.url+"/atf.v1.TaskService/Schedule", []byte(`{"lambda":"wat-hello","payload":"eyJuYW1lIjoiQWRhIn0="}`), "Content-Type", "application/json")
		if res.status != 200 {
			t.Fatalf("Connect Schedule: %d %s", res.status, res.body)
		}
		var sr atfv1.ScheduleResponse
		if err := protojson.Unmarshal(res.body, &sr); err != nil {
			t.Fatal(err)
		}
		finish(t, p, sr.GetTask().GetId(), 5*time.Second)
		res = do(t, "POST", p.url+"/atf.v1.TaskService/GetTask", []byte(`{"id":"`+sr.GetTask().GetId()+`"}`), "Content-Type", "application/json")
		if res.status != 200 || !strings.Contains(string(res.body), "TASK_STATE_SUCCESS") {
			t.Fatalf("Connect GetTask: %d %s", res.status, res.body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := client.Schedule(ctx, &atfv1.ScheduleRequest{Lambda: "wat-hello", Priority: 5})
		if err != nil {
			t.Fatalf("gRPC Schedule: %v", err)
		}
		if _, err := client.GetTask(ctx, &atfv1.GetTaskRequest{Id: got.GetTask().GetId()}); err != nil {
			t.Fatalf("gRPC GetTask: %v", err)
		}
		if _, err := client.GetTask(ctx, &atfv1.GetTaskRequest{Id: "nope"}); connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("gRPC GetTask of an unknown id: %v, want not_found", err)
		}
	})
	// After all of that, the platform still runs the next task.
	got := finish(t, p, schedule(t, p, "wat-hello", nil).GetId(), 5*time.Second)
	if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("the platform stopped running tasks: %s %v", got.GetState(), got.GetError())
	}
}

// TestSeparateProcesses runs the roles as `atf server` and `atf executor`
// processes talking Connect.
func TestSeparateProcesses(t *testing.T) {
	rs := redistest.StartServer(t)
	srv := start(t, true, "server", "--listen", "127.0.0.1:0", "--redis", rs.URL())
	start(t, false, "executor", "--server", srv.url, "--cache-dir", t.TempDir())
	deploy(t, srv, "echo", testmodules.Build(t, "echo"), "")
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = schedule(t, srv, "echo", []byte(fmt.Sprintf("task %d", i))).GetId()
	}
	for i, id := range ids {
		got := finish(t, srv, id, 20*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || string(got.GetOutput()) != fmt.Sprintf("task %d", i) {
			t.Fatalf("task %d: %s %q %v", i, got.GetState(), got.GetOutput(), got.GetError())
		}
	}

	// The client commands for people, against the same server.
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(binary(t), append(args, "--server", srv.url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("atf %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := cli("lambda", "list"); !strings.Contains(out, `"name": "echo"`) {
		t.Errorf("atf lambda list:\n%s", out)
	}
	wasm := filepath.Join(t.TempDir(), "echo.wasm")
	if err := os.WriteFile(wasm, testmodules.Build(t, "echo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := cli("lambda", "deploy", "echo2", wasm, "--max-output-bytes", "1000", "--max-log-bytes", "2000"); !strings.Contains(out, `"maxOutputBytes": 1000`) || !strings.Contains(out, `"maxLogBytes": 2000`) {
		t.Errorf("atf lambda deploy --max-output-bytes 1000 --max-log-bytes 2000:\n%s", out)
	}
	out := cli("task", "schedule", "echo", "--payload", "from the cli", "--wait")
	if !strings.Contains(out, `"state": "TASK_STATE_SUCCESS"`) || !strings.Contains(out, `"output": "ZnJvbSB0aGUgY2xp"`) {
		t.Errorf("atf task schedule --wait:\n%s", out)
	}
	if out, err := exec.Command(binary(t), "task", "get", "nope", "--server", srv.url).CombinedOutput(); err == nil || !strings.Contains(string(out), "not_found") {
		t.Errorf("atf task get nope: %v\n%s", err, out)
	}
}
