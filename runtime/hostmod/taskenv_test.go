package hostmod_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/hostmod"
	"github.com/atfhq/atf/runtime/sandbox"
)

func TestTaskEnv(t *testing.T) {
	h := setup(t, &hostmod.Task{Env: map[string]string{"ATF_TASK_ID": "task-42", "EMPTY": ""}})
	np, nn := h.put("ATF_TASK_ID")
	read := func(ptr uint64, n int) string {
		b, _ := h.mod.Memory().Read(uint32(ptr), uint32(n))
		return string(b)
	}

	buf := h.alloc(16)
	if c := h.mustCall("task_env", np, nn, buf, 16); c != 7 || read(buf, 7) != "task-42" {
		t.Errorf("task_env(ATF_TASK_ID) = %s, %q; want 7, task-42", c, read(buf, 7))
	}
	// Exactly the value's length fits.
	exact := h.alloc(7)
	if c := h.mustCall("task_env", np, nn, exact, 7); c != 7 || read(exact, 7) != "task-42" {
		t.Errorf("into 7 bytes: %s, %q", c, read(exact, 7))
	}
	// Too small: the length, and nothing copied.
	small := h.alloc(8)
	h.mod.Memory().Write(uint32(small), []byte("xxxxxxxx"))
	if c := h.mustCall("task_env", np, nn, small, 6); c != 7 || read(small, 8) != "xxxxxxxx" {
		t.Errorf("into 6 bytes: %s, buffer %q; want 7 and the buffer untouched", c, read(small, 8))
	}
	// Length only: a zero-length buffer, even at a null pointer.
	if c := h.mustCall("task_env", np, nn, 0, 0); c != 7 {
		t.Errorf("length only: %s, want 7", c)
	}
	ep, en := h.put("EMPTY")
	if c := h.mustCall("task_env", ep, en, buf, 16); c != 0 {
		t.Errorf("empty value: %s, want 0", c)
	}
	for _, name := range []string{"ATF_LAMBDA", "atf_task_id", "ATF_TASK_ID\x00"} {
		p, n := h.put(name)
		if c := h.mustCall("task_env", p, n, buf, 16); c != hostmod.CodeNotFound {
			t.Errorf("task_env(%q) = %s, want not found", name, c)
		}
	}
	lp, ln := h.put(string(make([]byte, hostmod.MaxEnvNameBytes+1)))
	for _, args := range [][2]uint64{{np, 0}, {lp, ln}} {
		if c := h.mustCall("task_env", args[0], args[1], buf, 16); c != hostmod.CodeInvalid {
			t.Errorf("name of %d bytes: %s, want invalid", args[1], c)
		}
	}
	// The pending result is not task_env's.
	h.task.Finish()

	_, err := h.call("task_env", 65530, 100, buf, 16)
	wantFault(t, err, "task_env", "name")
	_, err = h.call("task_env", 0xffffffff, 2, buf, 16)
	wantFault(t, err, "task_env", "name")
	_, err = h.call("task_env", np, nn, 65530, 100)
	wantFault(t, err, "task_env", "buffer")
	// Bounds come first: a bad buffer traps even for an unknown or
	// invalid name.
	_, err = h.call("task_env", lp, 0, 0xfffffff0, 32)
	wantFault(t, err, "task_env", "buffer")

	// Without an environment every name is NOT_FOUND.
	h2 := setup(t, nil)
	p, n := h2.put("ATF_TASK_ID")
	if c := h2.mustCall("task_env", p, n, h2.alloc(16), 16); c != hostmod.CodeNotFound {
		t.Errorf("no environment: %s, want not found", c)
	}
}

// engine is a sandbox Engine with atf_v1, as the executor has.
func engine(t *testing.T) *sandbox.Engine {
	t.Helper()
	ctx := context.Background()
	e, err := sandbox.New(ctx, sandbox.Config{HostModules: []sandbox.HostModule{hostmod.Register}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(ctx) })
	return e
}

// taskJob is task id's attempt of wasm, with the executor's environment.
func taskJob(wasm []byte, id string, attempt int, traceparent string) sandbox.Job {
	sum := sha256.Sum256(wasm)
	env := map[string]string{"ATF_TASK_ID": id, "ATF_LAMBDA": "envtest", "ATF_ATTEMPT": fmt.Sprint(attempt)}
	if traceparent != "" {
		env["TRACEPARENT"] = traceparent
	}
	return sandbox.Job{
		SHA256:   hex.EncodeToString(sum[:]),
		Load:     func(context.Context) ([]byte, error) { return wasm, nil },
		Env:      env,
		Timeout:  30 * time.Second,
		MemoryMB: 64,
		Host:     &hostmod.Task{TaskID: id, Lambda: "envtest"},
	}
}

func runOK(t *testing.T, e *sandbox.Engine, job sandbox.Job) string {
	t.Helper()
	res := e.Run(context.Background(), job)
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
		t.Fatalf("task %s: outcome %s, error %v", job.Env["ATF_TASK_ID"], res.Outcome, res.Error)
	}
	return string(res.Output)
}

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// One reactor instance serves two tasks; each reads its own environment
// through task_env (the instance's WASI environment holds ATF_LAMBDA only).
// A command reads the same values as its WASI environment holds. (The Go
// SDK's reactor is TestReactorGoTaskEnv in runtime/sandbox, whose tests
// have Go modules precompiled: wazero compiles them slowly under -race.)
func TestTaskEnvPerTask(t *testing.T) {
	e := engine(t)
	reactors := 0 // the reactor subtests that ran, one idle instance each
	t.Run("WAT reactor", func(t *testing.T) {
		wasm := testmodules.WAT(t, "reactortaskenv")
		reactors++
		got := runOK(t, e, taskJob(wasm, "task-a", 1, traceparent))
		if want := "ATF_TASK_ID=task-a;ATF_ATTEMPT=1;TRACEPARENT=" + traceparent + ";#1"; got != want {
			t.Errorf("first task: %q, want %q", got, want)
		}
		got = runOK(t, e, taskJob(wasm, "task-b", 3, ""))
		if want := "ATF_TASK_ID=task-b;ATF_ATTEMPT=3;TRACEPARENT=!2;#2"; got != want {
			t.Errorf("second task, same instance: %q, want %q", got, want)
		}
	})
	t.Run("WAT command", func(t *testing.T) {
		wasm := testmodules.WAT(t, "taskenv")
		for _, id := range []string{"task-c", "task-d"} {
			got := runOK(t, e, taskJob(wasm, id, 2, traceparent))
			if want := "ATF_TASK_ID=" + id + ";ATF_ATTEMPT=2;TRACEPARENT=" + traceparent + ";"; got != want {
				t.Errorf("%q, want %q", got, want)
			}
		}
	})
	t.Run("C reactor", func(t *testing.T) {
		wasm := testmodules.C(t, "reactortaskenv")
		reactors++
		for i, id := range []string{"task-e", "task-f"} {
			if got, want := runOK(t, e, taskJob(wasm, id, i+1, "")), fmt.Sprintf("%s;%d", id, i+1); got != want {
				t.Errorf("%q, want %q", got, want)
			}
		}
	})
	if got := e.CacheStats().IdleInstances; got != reactors {
		t.Errorf("idle instances = %d, want %d: one per reactor, reused", got, reactors)
	}
}
