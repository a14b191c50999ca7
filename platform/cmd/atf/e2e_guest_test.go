package main

// End-to-end tests of guest code: every example lambda (Go, Go with the
// guest SDK, C with atf.h, hand-written WAT) deployed and run through
// `atf dev`, and the atf_v1 host functions that need the platform (KV,
// follow-up tasks, cancel seen through progress, HTTP to allowed hosts
// only).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
)

// buildExample builds examples/<name> for wasip1 (Go; a reactor with
// -buildmode=c-shared when main.go has an //atf:reactor line, as the
// Makefile does), or from its <name>.wat or <name>.c, and returns the
// module.
func buildExample(t *testing.T, name string) []byte {
	t.Helper()
	src := filepath.Join("..", "..", "..", "examples", name)
	out := filepath.Join(t.TempDir(), name+".wasm")
	var cmd *exec.Cmd
	switch {
	case exists(filepath.Join(src, "main.go")):
		args := []string{"build", "-o", out}
		if slices.Contains(strings.Split(string(readExample(t, name, "main.go")), "\n"), "//atf:reactor") {
			args = append(args, "-buildmode=c-shared")
		}
		cmd = exec.Command("go", append(args, "./"+src)...)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	case exists(filepath.Join(src, name+".wat")):
		needTool(t, "wat2wasm", "wabt")
		cmd = exec.Command("wat2wasm", filepath.Join(src, name+".wat"), "-o", out)
	case exists(filepath.Join(src, name+".c")):
		needTool(t, "clang", "clang lld wasi-libc")
		cmd = exec.Command("clang", "--target=wasm32-wasi", "-O2", "-I", filepath.Join("..", "..", "..", "sdk", "guest", "c"),
			"-o", out, filepath.Join(src, name+".c"))
	default:
		t.Fatalf("examples/%s has no main.go, %s.wat or %s.c", name, name, name)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build examples/%s: %v\n%s", name, err, msg)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func needTool(t *testing.T, tool, pkgs string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		msg := fmt.Sprintf("%s not found: apt-get install %s", tool, pkgs)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func readExample(t *testing.T, name, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", name, file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// succeed runs one task of lambda and returns it, failing unless SUCCESS.
func succeed(t *testing.T, p *proc, lambda string, payload []byte) *atfv1.Task {
	t.Helper()
	got := finish(t, p, schedule(t, p, lambda, payload).GetId(), 60*time.Second)
	if got.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("%s: state %s error %v", lambda, got.GetState(), got.GetError())
	}
	return got
}

func TestExampleLambdas(t *testing.T) {
	p := startDev(t)

	t.Run("hello", func(t *testing.T) {
		deploy(t, p, "hello", buildExample(t, "hello"), "")
		got := succeed(t, p, "hello", readExample(t, "hello", "testdata/ada.json"))
		if want := readExample(t, "hello", "testdata/ada.golden"); !bytes.Equal(got.GetOutput(), want) {
			t.Errorf("output %q, want %q", got.GetOutput(), want)
		}
	})
	t.Run("markdown", func(t *testing.T) {
		deploy(t, p, "markdown", buildExample(t, "markdown"), "")
		got := succeed(t, p, "markdown", readExample(t, "markdown", "testdata/readme.md"))
		if want := readExample(t, "markdown", "testdata/readme.html"); !bytes.Equal(got.GetOutput(), want) {
			t.Errorf("output %q, want %q", got.GetOutput(), want)
		}
	})
	t.Run("order", func(t *testing.T) {
		deploy(t, p, "order", buildExample(t, "order"), "")
		got := succeed(t, p, "order", readExample(t, "order", "testdata/order.json"))
		if want := readExample(t, "order", "testdata/order.golden"); !bytes.Equal(got.GetOutput(), want) {
			t.Errorf("output %q, want %q", got.GetOutput(), want)
		}
	})
	t.Run("watprogress (atf_v1 from WAT)", func(t *testing.T) {
		deploy(t, p, "watprogress", buildExample(t, "watprogress"), "")
		got := succeed(t, p, "watprogress", nil)
		if string(got.GetOutput()) != "done\n" {
			t.Errorf("output %q", got.GetOutput())
		}
	})
	t.Run("cvisits (C, KV round trip)", func(t *testing.T) {
		deploy(t, p, "cvisits", buildExample(t, "cvisits"), "")
		for i := 1; i <= 2; i++ {
			got := succeed(t, p, "cvisits", []byte("Ada"))
			if want := fmt.Sprintf("Ada visit #%d\n", i); string(got.GetOutput()) != want {
				t.Errorf("task %d: output %q, want %q", i, got.GetOutput(), want)
			}
		}
		if got := succeed(t, p, "cvisits", []byte("Bob")); string(got.GetOutput()) != "Bob visit #1\n" {
			t.Errorf("another key: %q", got.GetOutput())
		}
	})
	t.Run("reverse (Go SDK, reactor)", func(t *testing.T) {
		l := deploy(t, p, "reverse", buildExample(t, "reverse"), "")
		if l.GetAbi() != atfv1.Abi_ABI_REACTOR {
			t.Fatalf("abi %s, want ABI_REACTOR", l.GetAbi())
		}
		want := readExample(t, "reverse", "testdata/lines.golden")
		for range 3 {
			got := succeed(t, p, "reverse", readExample(t, "reverse", "testdata/lines.txt"))
			if !bytes.Equal(got.GetOutput(), want) {
				t.Errorf("output %q, want %q", got.GetOutput(), want)
			}
			// The reactor logs guest.TaskID() and guest.Attempt(): each
			// task's own, read through atf_v1.task_env.
			logs := do(t, "GET", p.url+"/v1/tasks/"+got.GetId()+"/logs", nil)
			if wantLog := "[debug] task " + got.GetId() + " (attempt 1), "; !strings.Contains(string(logs.body), wantLog) {
				t.Errorf("logs %q, want a line starting %q", logs.body, wantLog)
			}
		}
		got := finish(t, p, schedule(t, p, "reverse", []byte("a\xffb")).GetId(), 60*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE || got.GetError().GetMessage() != "status 1: payload is not valid UTF-8 text" {
			t.Errorf("invalid payload: state %s, error %v", got.GetState(), got.GetError())
		}
		if got := succeed(t, p, "reverse", []byte("ab")); string(got.GetOutput()) != "ba" {
			t.Errorf("after a failure: output %q", got.GetOutput())
		}
	})
	t.Run("crawl (Go SDK: HTTP, KV, follow-up)", func(t *testing.T) {
		var hits atomic.Int32
		site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if r.Header.Get("User-Agent") != "atf-crawl/1" {
				http.Error(w, "no user agent", 400)
				return
			}
			fmt.Fprint(w, "<html>twelve</html>")
		}))
		defer site.Close()
		deploy(t, p, "crawl", buildExample(t, "crawl"), "allowed_hosts=127.0.0.1&timeout=30s")
		payload, _ := json.Marshal(map[string]any{"url": site.URL + "/", "depth": 1})
		first := succeed(t, p, "crawl", payload)
		var res struct {
			Status, Bytes, Visits int
			Next                  string
		}
		if err := json.Unmarshal(first.GetOutput(), &res); err != nil {
			t.Fatalf("output %q: %v", first.GetOutput(), err)
		}
		if res.Status != 200 || res.Bytes != 19 || res.Visits != 1 || res.Next == "" {
			t.Fatalf("first task: %+v", res)
		}
		next := finish(t, p, res.Next, 60*time.Second)
		if next.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS || next.GetTraceId() != first.GetTraceId() {
			t.Fatalf("follow-up: state %s error %v trace %s (first %s)", next.GetState(), next.GetError(), next.GetTraceId(), first.GetTraceId())
		}
		res.Next = ""
		if err := json.Unmarshal(next.GetOutput(), &res); err != nil || res.Visits != 2 || res.Next != "" {
			t.Fatalf("follow-up output %q: %v", next.GetOutput(), err)
		}
		if hits.Load() != 2 {
			t.Errorf("site hit %d times, want 2", hits.Load())
		}

		// localhost is not 127.0.0.1 as far as allowed_hosts go: denied,
		// an error code the lambda turns into a fatal failure.
		denied, _ := json.Marshal(map[string]any{"url": strings.Replace(site.URL, "127.0.0.1", "localhost", 1)})
		got := finish(t, p, schedule(t, p, "crawl", denied).GetId(), 60*time.Second)
		if got.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE || !strings.Contains(got.GetError().GetStderrTail(), "not in the lambda's allowed_hosts") {
			t.Errorf("denied host: state %s error %v", got.GetState(), got.GetError())
		}
		if hits.Load() != 2 {
			t.Errorf("a denied request reached the site")
		}
	})
}

// TestCancelSeenThroughProgress: a running lambda that reports progress
// learns of a cancel from its progress call and stops by itself; its
// progress shows on the task meanwhile.
func TestCancelSeenThroughProgress(t *testing.T) {
	p := startDev(t, "--heartbeat-interval", "200ms")
	deploy(t, p, "cancelprogress", testmodules.Build(t, "cancelprogress"), "timeout=60s&max_attempts=1")
	task := schedule(t, p, "cancelprogress", nil)
	deadline := time.Now().Add(30 * time.Second)
	for {
		res := do(t, "GET", p.url+"/v1/tasks/"+task.GetId(), nil)
		cur := decodeTask(t, res.body)
		if cur.GetState() == atfv1.TaskState_TASK_STATE_PROCESSING && cur.GetProgress() > 0 {
			break
		}
		if time.Now().After(deadline) || cur.GetFinishedAt() != nil {
			t.Fatalf("task never showed progress while running: %s", res.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	if res := do(t, "DELETE", p.url+"/v1/tasks/"+task.GetId(), nil); res.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", res.status, res.body)
	}
	got := finish(t, p, task.GetId(), 10*time.Second)
	if got.GetState() != atfv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("state %s error %v", got.GetState(), got.GetError())
	}
	if string(got.GetOutput()) != "stopped cleanly" {
		t.Errorf("output %q: the lambda did not stop by itself", got.GetOutput())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %s", d)
	}
}
