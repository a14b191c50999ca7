package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/hostmod"
	"github.com/atfhq/atf/runtime/sandbox"
)

// wantOutput checks a SUCCESS with exactly output.
func wantOutput(t *testing.T, res sandbox.Result, output string) {
	t.Helper()
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != output {
		t.Fatalf("outcome %s, output %q, error %v; want SUCCESS, %q", res.Outcome, res.Output, res.Error, output)
	}
}

// The WAT reactor counts the calls an instance served: "e" echoes the
// payload and that count.
func TestReactorReusesInstance(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.WAT(t, "reactor")
	for i := 1; i <= 3; i++ {
		wantOutput(t, b.run(t, b.newJob(wasm, "e")), fmt.Sprintf("e%d", i))
	}
	wantOutput(t, b.run(t, b.newJob(wasm, "i")), "1") // _initialize ran once
	wantOutput(t, b.run(t, b.newJob(wasm, "")), "")
	if got := b.engine.CacheStats().IdleInstances; got != 1 {
		t.Errorf("idle instances = %d, want 1", got)
	}
	// Another memory limit is another pool.
	job := b.newJob(wasm, "e")
	job.MemoryMB = 32
	wantOutput(t, b.run(t, job), "e1")
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e6")
}

// Any ending but SUCCESS closes the instance: the next task gets a fresh
// one ("e1").
func TestReactorFailuresDiscardInstance(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{MaxOutputBytes: 1000, MaxStackBytes: 1 << 20})
	wasm := testmodules.WAT(t, "reactor")
	for _, tc := range []struct {
		name, payload string
		timeout       time.Duration
		outcome       atfv1.Outcome
		kind          atfv1.ErrorKind
		message       string // exact, or a prefix when it ends with "…"
		limit         string
	}{
		{"status", "s\x07", 0, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT, "status 7: failing", ""},
		{"status 75", "s\x4b", 0, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_EXIT, "status 75: failing", ""},
		{"large status", "s\xff", 0, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT, "status 255: failing", ""},
		{"trap", "t", 0, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_TRAP, "trap: wasm error: unreachable…", ""},
		{"timeout", "l", 300 * time.Millisecond, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
			"timeout: the module ran longer than 300ms (timeout=300ms)", "timeout=300ms"},
		{"stack", "r", 0, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_TRAP,
			"stack limit hit: the module's call stack went over max_stack_bytes=1048576 (runaway recursion?)", "max_stack_bytes=1048576"},
		{"memory", "m", 0, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MEMORY_LIMIT,
			"memory limit hit: memory_mb=64 (the module asked for 126 MiB of linear memory)", "memory_mb=64"},
		{"proc_exit", "x\x03", 0, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT, "exit code 3", ""},
		{"output limit", "o", 0, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
			"output limit hit: the module wrote more than 1000 bytes to stdout (max_output_bytes=1000)", "max_output_bytes=1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := b.run(t, b.newJob(wasm, "e")); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
				t.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
			}
			job := b.newJob(wasm, tc.payload)
			if tc.timeout > 0 {
				job.Timeout = tc.timeout
			}
			res := b.run(t, job)
			if prefix, ok := strings.CutSuffix(tc.message, "…"); ok {
				if !strings.HasPrefix(res.Error.GetMessage(), prefix) {
					t.Errorf("message %q, want prefix %q", res.Error.GetMessage(), prefix)
				}
				tc.message = res.Error.GetMessage()
			}
			wantFailure(t, res, tc.outcome, tc.kind, tc.message, tc.limit)
			wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e1")
		})
	}

	t.Run("proc_exit 0", func(t *testing.T) {
		wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e2")
		wantOutput(t, b.run(t, b.newJob(wasm, "x\x00")), "") // SUCCESS, but the instance is gone
		wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e1")
	})
	t.Run("cancel", func(t *testing.T) {
		wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e2")
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(100*time.Millisecond, func() { cancel(errors.New("claim lost")) })
		res := b.engine.Run(ctx, b.newJob(wasm, "l"))
		wantFailure(t, res, atfv1.Outcome_OUTCOME_CANCELLED, atfv1.ErrorKind_ERROR_KIND_UNSPECIFIED, "cancelled: claim lost", "")
		wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e1")
	})
}

// A refused memory.grow the guest copes with is a SUCCESS: the instance
// is kept, and the refusal does not taint its next task.
func TestReactorMemoryRefusalHandled(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.WAT(t, "reactor")
	wantOutput(t, b.run(t, b.newJob(wasm, "M")), "")
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e2")
	wantOutput(t, b.run(t, b.newJob(wasm, "s\x00")), "")
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e4")
}

func TestReactorMaxUses(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{ReactorMaxUses: 3})
	wasm := testmodules.WAT(t, "reactor")
	var got []string
	for range 7 {
		res := b.run(t, b.newJob(wasm, "e"))
		got = append(got, string(res.Output))
	}
	if want := "e1 e2 e3 e1 e2 e3 e1"; strings.Join(got, " ") != want {
		t.Errorf("outputs %q, want %q", strings.Join(got, " "), want)
	}
}

// registerBarrier registers an atf_v1 ping that blocks until every task
// sharing the Job.Host *sync.WaitGroup has called it.
func registerBarrier(ctx context.Context, r wazero.Runtime) error {
	_, err := r.NewHostModuleBuilder("atf_v1").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
			wg := sandbox.HostFrom(ctx).(*sync.WaitGroup)
			wg.Done()
			wg.Wait()
		}), []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export("ping").
		Instantiate(ctx)
	return err
}

func TestReactorIdleBounds(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{ReactorIdlePerModule: 2, ReactorIdleTotal: 3, HostModules: []sandbox.HostModule{registerBarrier}})
	wasm := testmodules.WAT(t, "reactorhost")
	// n tasks at once, each holding its instance until all are running:
	// n instances.
	runAtOnce := func(n, memoryMB int) {
		var barrier, wg sync.WaitGroup
		barrier.Add(n)
		for range n {
			wg.Go(func() {
				job := b.newJob(wasm, "")
				job.MemoryMB = memoryMB
				job.Host = &barrier
				if res := b.run(t, job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
					t.Errorf("outcome %s, error %v", res.Outcome, res.Error)
				}
			})
		}
		wg.Wait()
	}
	runAtOnce(5, 64)
	if got := b.engine.CacheStats().IdleInstances; got != 2 {
		t.Errorf("idle instances = %d, want 2 (per module)", got)
	}
	runAtOnce(5, 32)
	if got := b.engine.CacheStats().IdleInstances; got != 3 {
		t.Errorf("idle instances = %d, want 3 (in all)", got)
	}
}

// An instance idle past ReactorIdleTimeout is closed; the next task gets a
// fresh one ("e1").
func TestReactorIdleTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{ReactorIdleTimeout: 40 * time.Millisecond})
	wasm := testmodules.WAT(t, "reactor")
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e1")
	deadline := time.Now().Add(10 * time.Second)
	for b.engine.CacheStats().IdleInstances != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle instances = %d after 10 s; want 0 (idle timeout 40ms)", b.engine.CacheStats().IdleInstances)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e1")
}

// Many goroutines share the pool; every task gets its own payload back.
func TestReactorConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{ReactorIdlePerModule: 4})
	wasm := testmodules.WAT(t, "reactor")
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				payload := fmt.Sprintf("e-%d-%d-", g, i)
				if i%7 == 3 {
					payload = "t" // some fail, and close their instance
				}
				res := b.engine.Run(context.Background(), b.newJob(wasm, payload))
				if payload == "t" {
					if res.Outcome != atfv1.Outcome_OUTCOME_FATAL {
						t.Errorf("trap: outcome %s", res.Outcome)
					}
					continue
				}
				if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || !strings.HasPrefix(string(res.Output), payload) ||
					len(res.Output) != len(payload)+1 {
					t.Errorf("%s: outcome %s, output %q, error %v", payload, res.Outcome, res.Output, res.Error)
				}
			}
		})
	}
	wg.Wait()
	if got := b.engine.CacheStats().IdleInstances; got > 4 {
		t.Errorf("idle instances = %d, want at most 4", got)
	}
}

// taskHost is a Job.Host that records what the host function saw.
type taskHost struct {
	calls  atomic.Int64
	taskID atomic.Value
}

func TestReactorHostIsPerTask(t *testing.T) {
	t.Parallel()
	register := func(ctx context.Context, r wazero.Runtime) error {
		_, err := r.NewHostModuleBuilder("atf_v1").
			NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
				h := sandbox.HostFrom(ctx).(*taskHost)
				h.calls.Add(1)
				h.taskID.Store(sandbox.TaskEnv(ctx)["ATF_TASK_ID"])
				stack[0] = uint64(uint32(stack[0]) + 1)
			}), []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
			Export("ping").
			Instantiate(ctx)
		return err
	}
	b := setup(t, sandbox.Config{HostModules: []sandbox.HostModule{register}})
	wasm := testmodules.WAT(t, "reactorhost")
	for i := range 3 {
		host := &taskHost{}
		job := b.newJob(wasm, "")
		job.Host = host
		job.Env["ATF_TASK_ID"] = fmt.Sprintf("task-%d", i)
		if res := b.run(t, job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
		}
		if host.calls.Load() != 1 || host.taskID.Load() != job.Env["ATF_TASK_ID"] {
			t.Errorf("task %d: host saw %d calls, task id %v", i, host.calls.Load(), host.taskID.Load())
		}
	}
	if got := b.engine.CacheStats().IdleInstances; got != 1 {
		t.Errorf("idle instances = %d, want 1 (one instance served the three tasks)", got)
	}
}

// An endless atf_handle ends at the timeout and the next task runs; the
// same for an endless _initialize.
// Not parallel: it measures time.
func TestReactorHostileTimeout(t *testing.T) {
	b := setup(t, sandbox.Config{})
	wasm := testmodules.WAT(t, "reactor")
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e1")
	for _, tc := range []struct {
		name, module, payload, message string
		next                           string // the echo task after it
	}{
		{"atf_handle", "reactor", "l", "timeout: the module ran longer than 1s (timeout=1s)", "e1"},
		{"_initialize", "reactorinitloop", "", "_initialize: timeout: the module ran longer than 1s (timeout=1s)", "e2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := b.newJob(testmodules.WAT(t, tc.module), tc.payload)
			job.Timeout = time.Second
			start := time.Now()
			res := b.run(t, job)
			elapsed := time.Since(start)
			wantFailure(t, res, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT, tc.message, "timeout=1s")
			if elapsed < time.Second || elapsed > 1500*time.Millisecond {
				t.Errorf("run took %s, want 1s to 1.5s", elapsed)
			}
			wantOutput(t, b.run(t, b.newJob(wasm, "e")), tc.next)
		})
	}
}

func TestReactorGo(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.Build(t, "reactorecho")
	info, err := b.engine.Inspect(context.Background(), wasm)
	if err != nil || info.ABI != atfv1.Abi_ABI_REACTOR {
		t.Fatalf("Inspect: %+v, %v", info, err)
	}
	wantOutput(t, b.run(t, b.newJob(wasm, "a")), "a #1")
	wantOutput(t, b.run(t, b.newJob(wasm, "b")), "b #2")
	wantFailure(t, b.run(t, b.newJob(wasm, "fail")), atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT,
		"status 1: asked to fail", "")
	wantOutput(t, b.run(t, b.newJob(wasm, "c")), "c #1")
	wantFailure(t, b.run(t, b.newJob(wasm, "retry")), atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_EXIT,
		"status 75: asked to retry", "")
	wantFailure(t, b.run(t, b.newJob(wasm, "panic")), atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT,
		"status 1: panic: asked to panic", "")
	res := b.run(t, b.newJob(wasm, "exit"))
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT, "exit code 3", "")
	wantExitCode(t, res, 3)
	wantOutput(t, b.run(t, b.newJob(wasm, "d")), "d #1")
	wantOutput(t, b.run(t, b.newJob(wasm, "sleep")), "sleep #2") // the Go scheduler runs inside atf_handle
	job := b.newJob(wasm, "loop")
	job.Timeout = 500 * time.Millisecond
	wantFailure(t, b.run(t, job), atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
		"timeout: the module ran longer than 500ms (timeout=500ms)", "timeout=500ms")
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e #1")
}

// The Go SDK's TaskID, Attempt and TraceParent in a reactor are the
// running task's, read through atf_v1.task_env, on one reused instance;
// the same when the job gives them as Vars (the map then built on the
// module's first task_env call).
func TestReactorGoTaskEnv(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{HostModules: []sandbox.HostModule{hostmod.Register}})
	wasm := testmodules.Build(t, "reactorenv")
	for i, tc := range []struct {
		id          string
		attempt     int
		traceparent string
		vars        bool
	}{
		{"task-a", 1, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"task-b", 2, "", false},
		{"task-c", 3, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"task-d", 1, "", true},
	} {
		job := b.newJob(wasm, "")
		job.Env["ATF_TASK_ID"] = tc.id
		job.Env["ATF_ATTEMPT"] = fmt.Sprint(tc.attempt)
		if tc.traceparent == "" {
			delete(job.Env, "TRACEPARENT")
		} else {
			job.Env["TRACEPARENT"] = tc.traceparent
		}
		if tc.vars {
			job.Env, job.Vars = nil, sandbox.Vars{TaskID: tc.id, Lambda: "test", Attempt: fmt.Sprint(tc.attempt), TraceParent: tc.traceparent}
		}
		job.Host = &hostmod.Task{TaskID: tc.id, Lambda: "test"}
		wantOutput(t, b.run(t, job), fmt.Sprintf("%s;%d;%s;test;#%d", tc.id, tc.attempt, tc.traceparent, i+1))
	}
}

func TestReactorC(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.C(t, "reactorecho")
	for _, p := range []string{"one", "", strings.Repeat("x", 10000)} {
		wantOutput(t, b.run(t, b.newJob(wasm, p)), p)
	}
	if got := b.engine.CacheStats().IdleInstances; got != 1 {
		t.Errorf("idle instances = %d, want 1", got)
	}
}

func TestReactorCloseEngine(t *testing.T) {
	t.Parallel()
	e, err := sandbox.New(context.Background(), sandbox.Config{CompilationCacheDir: sharedCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{engine: e}
	wasm := testmodules.WAT(t, "reactor")
	wantOutput(t, b.run(t, b.newJob(wasm, "e")), "e1")
	done := make(chan sandbox.Result)
	go func() { done <- e.Run(context.Background(), b.newJob(wasm, "l")) }()
	time.Sleep(100 * time.Millisecond)
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res.Outcome == atfv1.Outcome_OUTCOME_SUCCESS {
		t.Errorf("a run in flight at Close: outcome %s", res.Outcome)
	}
	if s := e.CacheStats(); s.IdleInstances != 0 || s.Modules != 0 {
		t.Errorf("after Close: %+v", s)
	}
}
