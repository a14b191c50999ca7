package sandbox_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// Modules that never end by themselves: each must be stopped by a 1s
// timeout within 1.5s, then the Engine must still run a normal task.
// Not parallel: it measures time, and parallel tests spinning on every core
// delay the timer that stops the module.
func TestRunHostileTimeouts(t *testing.T) {
	b := setup(t, sandbox.Config{})
	for _, tc := range []struct {
		name    string
		wasm    func(t *testing.T) []byte
		payload string
	}{
		{"go busy loop", func(t *testing.T) []byte { return testmodules.Build(t, "loop") }, ""},
		{"wat empty loop", func(t *testing.T) []byte { return testmodules.WAT(t, "spin") }, ""},
		{"loop in the start section", func(t *testing.T) []byte { return testmodules.WAT(t, "startloop") }, ""},
		{"calls without a loop", func(t *testing.T) []byte { return testmodules.WAT(t, "callspin") }, ""},
		{"exponential calls, no loop, no recursion", func(t *testing.T) []byte { return testmodules.WAT(t, "dagspin") }, ""},
		{"sleep in poll_oneoff past the deadline", func(t *testing.T) []byte { return testmodules.Build(t, "sleep") }, "60000"},
		{"c cpu loop", func(t *testing.T) []byte { return testmodules.C(t, "xorshift") }, "100000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := b.newJob(tc.wasm(t), tc.payload)
			b.requireCompiled(t, job)
			job.Timeout = time.Second
			start := time.Now()
			res := b.run(t, job)
			elapsed := time.Since(start)
			wantFailure(t, res, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
				"timeout: the module ran longer than 1s (timeout=1s)", "timeout=1s")
			if elapsed < time.Second || elapsed > 1500*time.Millisecond {
				t.Errorf("run took %s, want 1s to 1.5s", elapsed)
			}
			b.requireEcho(t)
		})
	}
}

// A cancel (claim lost) stops every kind of endless module within a second.
func TestRunHostileCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	for _, wasm := range [][]byte{testmodules.WAT(t, "callspin"), testmodules.Build(t, "sleep")} {
		job := b.newJob(wasm, "60000")
		b.requireCompiled(t, job)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		res := b.engine.Run(ctx, job)
		if res.Outcome != atfv1.Outcome_OUTCOME_CANCELLED {
			t.Errorf("outcome %s, error %v", res.Outcome, res.Error)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("cancel took %s", elapsed)
		}
	}
	b.requireEcho(t)
}

// Per-job output and log limits (the lambda's max_output_bytes and
// max_log_bytes) override the Engine's and name themselves.
func TestRunJobStreamLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	job := b.newJob(testmodules.Build(t, "stderrflood"), "")
	job.MaxLogBytes = 1 << 20
	res := b.run(t, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
		"log limit hit: the module wrote more than 1048576 bytes to stderr (max_log_bytes=1048576)", "max_log_bytes=1048576")
	b.requireEcho(t)

	job = b.newJob(testmodules.Build(t, "flood"), "")
	job.MaxOutputBytes = 1000
	res = b.run(t, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
		"output limit hit: the module wrote more than 1000 bytes to stdout (max_output_bytes=1000)", "max_output_bytes=1000")
	if len(res.Output) != 1000 {
		t.Errorf("output %d bytes, want 1000", len(res.Output))
	}
	b.requireEcho(t)
}

// Odd proc_exit codes, including the two wazero reserves for a module it
// closed itself (0xffffffff, 0xefffffff): a guest can pass them too.
func TestRunOddExitCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.Build(t, "exit")
	for _, tc := range []struct {
		payload string
		code    int32
	}{{"255", 255}, {"-1", -1}, {"-268435457", -268435457}, {"2147483647", 2147483647}} {
		res := b.run(t, b.newJob(wasm, tc.payload))
		wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT,
			"exit code "+strconv.FormatUint(uint64(uint32(tc.code)), 10)+": bye", "")
		wantExitCode(t, res, tc.code)
	}
	b.requireEcho(t)
}
