package executor

import (
	"context"
	"log/slog"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/runtime/hostmod"
	"github.com/atfhq/atf/runtime/sandbox"
)

// loggingRunner logs through the task's atf_v1 log function, as a module's
// log call would, and writes stderr; it records the limits it was given.
type loggingRunner struct{ jobs chan sandbox.Job }

func (r loggingRunner) Run(ctx context.Context, job sandbox.Job) sandbox.Result {
	r.jobs <- job
	job.Host.(*hostmod.Task).Log(slog.LevelWarn, "careful\n")
	return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_RETRY, Stderr: "panic: boom"}
}

func TestAttemptLogsAndLimits(t *testing.T) {
	t.Parallel()
	w := work("a")
	w.Attempt, w.MaxOutputBytes, w.MaxLogBytes = 2, 100, 200
	r := loggingRunner{jobs: make(chan sandbox.Job, 1)}
	b := setup(t, r, w)
	if err := runFor(t, b.ex, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	job := <-r.jobs
	if job.MaxOutputBytes != 100 || job.MaxLogBytes != 200 {
		t.Errorf("job limits %d, %d; want the lambda's 100, 200", job.MaxOutputBytes, job.MaxLogBytes)
	}
	if got := job.Host.(*hostmod.Task).Limits.MaxLogBytes; got != 200 {
		t.Errorf("log calls capped at %d, want max_log_bytes 200", got)
	}
	_, results := b.status.snapshot()
	if len(results) != 1 {
		t.Fatalf("%d results", len(results))
	}
	if got, want := results[0].GetLogs(), "--- attempt 2: retry ---\n[warn] careful\npanic: boom\n"; got != want {
		t.Errorf("logs %q, want %q", got, want)
	}
}

func TestAttemptLogs(t *testing.T) {
	for _, c := range []struct {
		attempt       int32
		calls, stderr string
		want          string
	}{
		{1, "", "", ""},
		{2, "", "", "--- attempt 2: success ---\n"},
		{1, "", "out\n", "--- attempt 1: success ---\nout\n"},
		{1, "[info] hi\n", "", "--- attempt 1: success ---\n[info] hi\n"},
	} {
		if got := attemptLogs(c.attempt, atfv1.Outcome_OUTCOME_SUCCESS, c.calls, c.stderr); got != c.want {
			t.Errorf("attemptLogs(%d, %q, %q) = %q, want %q", c.attempt, c.calls, c.stderr, got, c.want)
		}
	}
}
