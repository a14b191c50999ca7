package sandbox_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// testBundle is one Engine and the modules a test runs on it.
type testBundle struct {
	engine *sandbox.Engine
	loads  atomic.Int64 // calls of any Job.Load made by newJob
}

func setup(t *testing.T, cfg sandbox.Config) *testBundle {
	t.Helper()
	ctx := context.Background()
	e, err := sandbox.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testBundle{engine: e}
}

func sum(wasm []byte) string {
	s := sha256.Sum256(wasm)
	return hex.EncodeToString(s[:])
}

// newJob is a job for wasm with 64 MiB, a 10s timeout and the usual env.
func (b *testBundle) newJob(wasm []byte, payload string) sandbox.Job {
	return sandbox.Job{
		SHA256: sum(wasm),
		Load: func(context.Context) ([]byte, error) {
			b.loads.Add(1)
			return wasm, nil
		},
		Payload: []byte(payload),
		Env: map[string]string{
			"ATF_TASK_ID": "task-1",
			"ATF_LAMBDA":  "test",
			"ATF_ATTEMPT": "1",
			"TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
		Timeout:  10 * time.Second,
		MemoryMB: 64,
	}
}

func (b *testBundle) run(t *testing.T, job sandbox.Job) sandbox.Result {
	t.Helper()
	res := b.engine.Run(context.Background(), job)
	t.Logf("outcome=%s duration=%s error=%v", res.Outcome, res.Duration, res.Error)
	return res
}

// requireEcho checks that the Engine still runs a normal module.
func (b *testBundle) requireEcho(t *testing.T) {
	t.Helper()
	res := b.run(t, b.newJob(testmodules.Build(t, "echo"), "still alive"))
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != "still alive" {
		t.Fatalf("echo after a hostile module: outcome %s, output %q, error %v", res.Outcome, res.Output, res.Error)
	}
}

func TestSmoke(t *testing.T) {
	b := setup(t, sandbox.Config{})
	for _, name := range []string{"echo", "memhog", "panic", "recurse", "exit"} {
		job := b.newJob(testmodules.Build(t, name), "1")
		job.MemoryMB = 16
		res := b.run(t, job)
		t.Logf("%s: %s %q %+v", name, res.Outcome, res.Output, res.Error)
	}
}
