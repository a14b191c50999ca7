package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// wantFailure checks outcome, kind, an exact message and the limit.
func wantFailure(t *testing.T, res sandbox.Result, outcome atfv1.Outcome, kind atfv1.ErrorKind, message, limit string) {
	t.Helper()
	if res.Outcome != outcome {
		t.Errorf("outcome = %s, want %s (error %v)", res.Outcome, outcome, res.Error)
	}
	if res.Error == nil {
		t.Fatalf("error = nil, want kind %s", kind)
	}
	if res.Error.GetKind() != kind {
		t.Errorf("error kind = %s, want %s", res.Error.GetKind(), kind)
	}
	if res.Error.GetMessage() != message {
		t.Errorf("error message = %q, want %q", res.Error.GetMessage(), message)
	}
	if res.Error.GetLimit() != limit {
		t.Errorf("error limit = %q, want %q", res.Error.GetLimit(), limit)
	}
}

func wantExitCode(t *testing.T, res sandbox.Result, code int32) {
	t.Helper()
	if res.Error == nil || res.Error.ExitCode == nil {
		t.Fatalf("no exit code in %v, want %d", res.Error, code)
	}
	if got := res.Error.GetExitCode(); got != code {
		t.Errorf("exit code = %d, want %d", got, code)
	}
}

func TestRunEchoSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	res := b.run(t, b.newJob(testmodules.Build(t, "echo"), "hello, sandbox"))
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || res.Error != nil {
		t.Fatalf("outcome %s, error %v; want SUCCESS, nil", res.Outcome, res.Error)
	}
	if string(res.Output) != "hello, sandbox" || res.OutputTruncated {
		t.Errorf("output %q (truncated %v), want %q", res.Output, res.OutputTruncated, "hello, sandbox")
	}
	if res.Duration <= 0 {
		t.Errorf("duration = %s, want > 0", res.Duration)
	}
}

func TestRunWATHello(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	res := b.run(t, b.newJob(testmodules.WAT(t, "hello"), ""))
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != "hello from wat\n" {
		t.Fatalf("outcome %s, output %q, error %v", res.Outcome, res.Output, res.Error)
	}
}

func TestRunExit(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.Build(t, "exit")

	t.Run("75 retries", func(t *testing.T) {
		res := b.run(t, b.newJob(wasm, "75"))
		wantFailure(t, res, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_EXIT, "exit code 75: bye", "")
		wantExitCode(t, res, 75)
	})
	t.Run("1 is fatal", func(t *testing.T) {
		res := b.run(t, b.newJob(wasm, "1"))
		wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT, "exit code 1: bye", "")
		wantExitCode(t, res, 1)
		if res.Error.GetStderrTail() != "bye\n" {
			t.Errorf("stderr tail = %q, want %q", res.Error.GetStderrTail(), "bye\n")
		}
	})
	t.Run("0 succeeds", func(t *testing.T) {
		res := b.run(t, b.newJob(wasm, "0"))
		if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || res.Error != nil {
			t.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
		}
	})
}

func TestRunFlakyReadsAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.Build(t, "flaky")
	for attempt := 1; attempt <= 3; attempt++ {
		job := b.newJob(wasm, "3")
		job.Env["ATF_ATTEMPT"] = fmt.Sprint(attempt)
		res := b.run(t, job)
		if attempt < 3 {
			wantFailure(t, res, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_EXIT,
				fmt.Sprintf("exit code 75: attempt %d < 3, try again", attempt), "")
			continue
		}
		if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != "ok attempt=3" {
			t.Fatalf("attempt 3: outcome %s, output %q, error %v", res.Outcome, res.Output, res.Error)
		}
	}
}

func TestRunTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	job := b.newJob(testmodules.Build(t, "loop"), "")
	job.Timeout = time.Second
	b.requireCompiled(t, job) // time the run, not the compilation
	start := time.Now()
	res := b.run(t, job)
	elapsed := time.Since(start)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
		"timeout: the module ran longer than 1s (timeout=1s)", "timeout=1s")
	if elapsed < time.Second || elapsed > 1500*time.Millisecond {
		t.Errorf("run took %s, want 1s to 1.5s", elapsed)
	}
	// A busy loop's CPU time is about its run time (less when the box is
	// loaded and the thread waits for a core).
	if runtime.GOOS == "linux" && (res.CPUTime < 100*time.Millisecond || res.CPUTime > elapsed+100*time.Millisecond) {
		t.Errorf("CPUTime = %s for a %s busy loop", res.CPUTime, elapsed)
	}
	b.requireEcho(t)
}

// requireCompiled runs job with a tiny timeout so its module is compiled.
func (b *testBundle) requireCompiled(t *testing.T, job sandbox.Job) {
	t.Helper()
	job.Timeout = time.Millisecond
	b.engine.Run(context.Background(), job)
}

func TestRunMemoryLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	job := b.newJob(testmodules.Build(t, "memhog"), "")
	job.MemoryMB = 16
	res := b.run(t, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MEMORY_LIMIT,
		"memory limit hit: memory_mb=16 (the module asked for 17 MiB of linear memory)", "memory_mb=16")
	wantExitCode(t, res, 2) // Go's "fatal error: out of memory"
	if !strings.Contains(res.Error.GetStderrTail(), "goroutine") {
		t.Errorf("stderr tail %q lacks the Go crash report", res.Error.GetStderrTail())
	}
	b.requireEcho(t)

	// The same module under a larger limit gets further: the limit is per
	// job, not per compiled module.
	job.MemoryMB = 48
	res = b.run(t, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MEMORY_LIMIT,
		"memory limit hit: memory_mb=48 (the module asked for 49 MiB of linear memory)", "memory_mb=48")
	if got := b.loads.Load(); got != 2 { // memhog once, echo once
		t.Errorf("Load called %d times, want 2", got)
	}
}

func TestRunInitialMemoryAboveLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	job := b.newJob(testmodules.WAT(t, "bigmem"), "") // 32 MiB initial memory
	job.MemoryMB = 16
	res := b.run(t, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MEMORY_LIMIT,
		"memory limit hit: memory_mb=16 (module declares 32 MiB of initial memory, above its limit of 16 MiB)", "memory_mb=16")
	job.MemoryMB = 32
	if res := b.run(t, job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
		t.Fatalf("at memory_mb=32: outcome %s, error %v", res.Outcome, res.Error)
	}
	b.requireEcho(t)
}

type envReport struct {
	PasswdOpens bool              `json:"passwd_opens"`
	PasswdError string            `json:"passwd_error"`
	HomeSet     bool              `json:"home_set"`
	PathSet     bool              `json:"path_set"`
	Environ     []string          `json:"environ"`
	ATF         map[string]string `json:"atf"`
}

// The guest's environment is exactly the job's: Env, or the same
// variables given as Vars.
func TestRunEnvironmentIsExactlyJobEnv(t *testing.T) {
	t.Setenv("ATF_LEAK_CHECK", "host-value") // must not reach the guest
	b := setup(t, sandbox.Config{})
	for _, vars := range []bool{false, true} {
		job := b.newJob(testmodules.Build(t, "envprobe"), "")
		env := job.Env
		if vars {
			job.Env, job.Vars = nil, sandbox.Vars{TaskID: env["ATF_TASK_ID"], Lambda: env["ATF_LAMBDA"], Attempt: env["ATF_ATTEMPT"], TraceParent: env["TRACEPARENT"]}
		}
		res := b.run(t, job)
		if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("vars %v: outcome %s, error %v", vars, res.Outcome, res.Error)
		}
		var got envReport
		if err := json.Unmarshal(res.Output, &got); err != nil {
			t.Fatalf("decode %q: %v", res.Output, err)
		}
		if got.PasswdOpens {
			t.Error("the guest opened /etc/passwd")
		}
		if got.HomeSet || got.PathSet {
			t.Errorf("the guest sees HOME (%v) or PATH (%v)", got.HomeSet, got.PathSet)
		}
		var want []string
		for _, k := range slices.Sorted(maps.Keys(env)) {
			want = append(want, k+"="+env[k])
		}
		if !slices.Equal(got.Environ, want) {
			t.Errorf("vars %v: environ = %q, want %q", vars, got.Environ, want)
		}
		wantATF := map[string]string{"ATF_TASK_ID": "task-1", "ATF_LAMBDA": "test", "ATF_ATTEMPT": "1"}
		if !maps.Equal(got.ATF, wantATF) {
			t.Errorf("vars %v: ATF_* = %v, want %v", vars, got.ATF, wantATF)
		}
	}
}

// A job whose environment would not survive WASI (a NUL byte) is refused
// before it runs, given as Env or as Vars.
func TestRunRefusesInvalidEnvironment(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.WAT(t, "reactor")
	for _, vars := range []bool{false, true} {
		job := b.newJob(wasm, "e")
		if vars {
			job.Env, job.Vars = nil, sandbox.Vars{TaskID: "t", Lambda: "test", Attempt: "1", TraceParent: "00-\x00"}
		} else {
			job.Env["TRACEPARENT"] = "00-\x00"
		}
		wantFailure(t, b.run(t, job), atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL,
			`job has an invalid environment variable "TRACEPARENT"`, "")
	}
}

// Not parallel: TotalAlloc counts every goroutine in the process.
func TestRunOutputLimit(t *testing.T) {
	const limit = 1 << 20
	b := setup(t, sandbox.Config{MaxOutputBytes: limit})
	job := b.newJob(testmodules.Build(t, "flood"), "")
	b.requireCompiled(t, job)

	res, allocated := b.runAllocating(t, job)

	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
		"output limit hit: the module wrote more than 1048576 bytes to stdout (max_output_bytes=1048576)", "max_output_bytes=1048576")
	if len(res.Output) != limit || !res.OutputTruncated {
		t.Errorf("output %d bytes (truncated %v), want %d, true", len(res.Output), res.OutputTruncated, limit)
	}
	// The module would write 256 MiB; the host must allocate a small
	// multiple of the limit (buffer growth, the guest's own memory).
	if grown := allocated; grown > 32<<20 {
		t.Errorf("the host allocated %d MiB during the run, want < 32 MiB", grown>>20)
	}
	b.requireEcho(t)
}

// Not parallel: TotalAlloc counts every goroutine in the process.
func TestRunStderrFloodKeepsTail(t *testing.T) {
	b := setup(t, sandbox.Config{StderrTailBytes: 100, MaxLogBytes: 1 << 30})
	job := b.newJob(testmodules.Build(t, "stderrflood"), "")
	b.requireCompiled(t, job)
	res, allocated := b.runAllocating(t, job)
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != "done" {
		t.Fatalf("outcome %s, output %q, error %v", res.Outcome, res.Output, res.Error)
	}
	if grown := allocated; grown > 32<<20 {
		t.Errorf("the host allocated %d MiB during the run, want < 32 MiB", grown>>20)
	}
	b.requireEcho(t)

	// A failing run shows the tail: the exit module after the flood.
	res = b.run(t, b.newJob(testmodules.Build(t, "exit"), "4"))
	if res.Error.GetStderrTail() != "bye\n" {
		t.Errorf("stderr tail = %q", res.Error.GetStderrTail())
	}
}

func TestRunTraps(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	for _, tc := range []struct {
		name, message string
		wasm          func(t *testing.T) []byte
		exitCode      int32 // -1: no exit code
	}{
		{"unreachable", "trap: wasm error: unreachable", func(t *testing.T) []byte { return testmodules.WAT(t, "unreachable") }, -1},
		{"out of bounds", "trap: wasm error: out of bounds memory access", func(t *testing.T) []byte { return testmodules.WAT(t, "oob") }, -1},
		{"go panic", "exit code 2: panic: boom from the panic module", func(t *testing.T) []byte { return testmodules.Build(t, "panic") }, 2},
		{"go stack overflow", "exit code 2: fatal error: stack overflow", func(t *testing.T) []byte { return testmodules.Build(t, "recurse") }, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := b.run(t, b.newJob(tc.wasm(t), ""))
			wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_TRAP, tc.message, "")
			if tc.exitCode >= 0 {
				wantExitCode(t, res, tc.exitCode)
			} else if res.Error.ExitCode != nil {
				t.Errorf("exit code %d on a trap", res.Error.GetExitCode())
			}
			b.requireEcho(t)
		})
	}
}

// Not parallel: TotalAlloc counts every goroutine in the process.
func TestRunStackLimit(t *testing.T) {
	b := setup(t, sandbox.Config{MaxStackBytes: 1 << 20})
	// recurse: direct self-recursion; recurseindirect: through a table,
	// calling a looping helper on every level.
	for _, name := range []string{"recurse", "recurseindirect"} {
		job := b.newJob(testmodules.WAT(t, name), "")
		b.requireCompiled(t, job)
		res, allocated := b.runAllocating(t, job)
		wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_TRAP,
			"stack limit hit: the module's call stack went over max_stack_bytes=1048576 (runaway recursion?)", "max_stack_bytes=1048576")
		// Without the bound wazero grows the stack to 400 MB on the Go heap.
		if grown := allocated; grown > 16<<20 {
			t.Errorf("%s: the host allocated %d MiB during the run, want < 16 MiB", name, grown>>20)
		}
	}
	b.requireEcho(t)
}

// The instrumentation rewrites recursive functions into threaded clones;
// calls.wat traps if any of its recursive computations comes out wrong.
func TestRunRewrittenCallsKeepTheirMeaning(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	for _, name := range []string{"calls", "fib"} {
		res := b.run(t, b.newJob(testmodules.WAT(t, name), ""))
		if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Errorf("%s: outcome %s, error %v", name, res.Outcome, res.Error)
		}
	}
}

func TestRunCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	job := b.newJob(testmodules.Build(t, "loop"), "")
	b.requireCompiled(t, job)

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res := b.engine.Run(ctx, job)
	elapsed := time.Since(start)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_CANCELLED, atfv1.ErrorKind_ERROR_KIND_UNSPECIFIED, "cancelled: context canceled", "")
	if elapsed > 700*time.Millisecond {
		t.Errorf("cancel took %s to stop the module, want < 700ms", elapsed)
	}

	// A context cancelled with a cause says so.
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	cancel2(errors.New("claim lost"))
	res = b.engine.Run(ctx2, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_CANCELLED, atfv1.ErrorKind_ERROR_KIND_UNSPECIFIED, "cancelled: claim lost", "")
	b.requireEcho(t)
}

func TestRunConcurrentCompilesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.Build(t, "echo")
	job := b.newJob(wasm, "")
	release := make(chan struct{})
	load := job.Load
	job.Load = func(ctx context.Context) ([]byte, error) {
		<-release // hold the first compile so the others pile up behind it
		return load(ctx)
	}
	const n = 16
	results := make([]sandbox.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		j := job
		j.Payload = []byte(fmt.Sprintf("run %d", i))
		wg.Go(func() { results[i] = b.engine.Run(context.Background(), j) })
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	for i, res := range results {
		if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != fmt.Sprintf("run %d", i) {
			t.Errorf("run %d: outcome %s, output %q, error %v", i, res.Outcome, res.Output, res.Error)
		}
	}
	if got := b.loads.Load(); got != 1 {
		t.Errorf("Load called %d times, want 1", got)
	}
}

func TestRunHostSideFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	echo := testmodules.Build(t, "echo")

	t.Run("load fails", func(t *testing.T) {
		job := b.newJob(echo, "")
		job.SHA256 = "feed"
		job.Load = func(context.Context) ([]byte, error) { return nil, errors.New("blob store down") }
		wantFailure(t, b.run(t, job), atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL,
			"load module feed: blob store down", "")
	})
	t.Run("wrong bytes", func(t *testing.T) {
		job := b.newJob(echo, "")
		job.SHA256 = strings.Repeat("0", 64)
		res := b.run(t, job)
		wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL,
			"loaded module has sha256 "+sum(echo)+", want "+job.SHA256, "")
	})
	t.Run("not wasm", func(t *testing.T) {
		junk := []byte("#!/bin/sh\necho hi\n")
		res := b.run(t, b.newJob(junk, ""))
		wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MODULE,
			`not a WebAssembly module: the upload does not start with the \0asm magic number; upload the .wasm file your compiler produced`, "")
	})
	t.Run("reactor without atf_handle", func(t *testing.T) {
		res := b.run(t, b.newJob(testmodules.WAT(t, "badreactor"), ""))
		wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MODULE,
			"module exports _initialize but not atf_handle: a reactor must export atf_handle(payload_len i32) -> i32 (sdk/guest/ABI.md); or build a command (no -buildmode=c-shared, or clang without -mexec-model=reactor)", "")
	})
	t.Run("bad import", func(t *testing.T) {
		res := b.run(t, b.newJob(testmodules.WAT(t, "badimport"), ""))
		if res.Outcome != atfv1.Outcome_OUTCOME_FATAL || res.Error.GetKind() != atfv1.ErrorKind_ERROR_KIND_MODULE ||
			!strings.HasPrefix(res.Error.GetMessage(), "instantiate module: ") {
			t.Errorf("outcome %s, error %v", res.Outcome, res.Error)
		}
	})
	t.Run("zero memory", func(t *testing.T) {
		job := b.newJob(echo, "")
		job.MemoryMB = 0
		wantFailure(t, b.run(t, job), atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL,
			"job has memory_mb=0; it must be positive", "")
	})
	t.Run("failures are not cached", func(t *testing.T) {
		job := b.newJob(echo, "again")
		job.Load = func(context.Context) ([]byte, error) { return nil, errors.New("transient") }
		b.run(t, job)
		job = b.newJob(echo, "again")
		if res := b.run(t, job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("after a failed load: outcome %s, error %v", res.Outcome, res.Error)
		}
	})
	b.requireEcho(t)
}

func TestRunAfterClose(t *testing.T) {
	t.Parallel()
	e, err := sandbox.New(context.Background(), sandbox.Config{CompilationCacheDir: sharedCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{engine: e}
	b.requireEcho(t)
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	res := b.engine.Run(context.Background(), b.newJob(testmodules.Build(t, "echo"), ""))
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL, "sandbox: engine closed", "")
}

// runAllocating runs job and reports how many bytes the process allocated
// meanwhile. Tests using it must not run in parallel.
func (b *testBundle) runAllocating(t *testing.T, job sandbox.Job) (sandbox.Result, uint64) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := b.run(t, job)
	runtime.ReadMemStats(&after)
	return res, after.TotalAlloc - before.TotalAlloc
}

// TestCloseStopsCommandsInFlight: Close stops a command module that spins,
// as it does a reactor's call (TestReactorCloseEngine), promptly and with
// the engine-closed cause, not the run's timeout.
func TestCloseStopsCommandsInFlight(t *testing.T) {
	t.Parallel()
	e, err := sandbox.New(context.Background(), sandbox.Config{CompilationCacheDir: sharedCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{engine: e}
	job := b.newJob(testmodules.WAT(t, "spin"), "")
	job.Timeout = 50 * time.Millisecond // compiles it: the runs below start at once
	if res := e.Run(context.Background(), job); res.Error.GetKind() != atfv1.ErrorKind_ERROR_KIND_TIMEOUT {
		t.Fatalf("spin with a 50ms timeout: %s %v", res.Outcome, res.Error)
	}
	job.Timeout = time.Minute
	done := make(chan sandbox.Result, 4)
	for range cap(done) {
		go func() { done <- e.Run(context.Background(), job) }()
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range cap(done) {
		res := <-done
		if res.Outcome == atfv1.Outcome_OUTCOME_SUCCESS || !strings.Contains(res.Error.GetMessage(), "engine closed") {
			t.Errorf("a run in flight at Close: %s %v", res.Outcome, res.Error)
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Close and the runs' ends took %s", took)
	}
}
