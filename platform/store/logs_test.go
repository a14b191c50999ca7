package store

import (
	"errors"
	"strings"
	"testing"
)

func TestRecordAttemptLogsRedis(t *testing.T)     { testRecordAttemptLogs(t, setup(t)) }
func TestRecordAttemptLogsMiniredis(t *testing.T) { testRecordAttemptLogs(t, setupMiniredis(t)) }

// testRecordAttemptLogs: each attempt's logs are appended to the task's,
// an attempt with none adds nothing, a stale claim adds nothing, and past
// MaxLogBytes the oldest lines go, cut at a line start.
func testRecordAttemptLogs(t *testing.T, b *testBundle) {
	task := b.running(t, NewTask{MaxAttempts: 3})
	logs := func() string {
		t.Helper()
		s, err := b.store.TaskLogs(b.ctx, ns, task.ID)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := logs(); got != "" {
		t.Fatalf("logs before any attempt: %q", got)
	}
	if err := b.store.RecordAttempt(b.ctx, task.ID, task.Token, "", "--- attempt 1: retry ---\nfirst\n"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.RecordAttempt(b.ctx, task.ID, task.Token, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.store.RecordAttempt(b.ctx, task.ID, task.Token, "", "--- attempt 2: success ---\n"); err != nil {
		t.Fatal(err)
	}
	if got, want := logs(), "--- attempt 1: retry ---\nfirst\n--- attempt 2: success ---\n"; got != want {
		t.Fatalf("logs %q, want %q", got, want)
	}
	if err := b.store.RecordAttempt(b.ctx, task.ID, task.Token+1, "", "stale\n"); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("stale token: %v, want ErrClaimLost", err)
	}

	line := strings.Repeat("x", 1023) + "\n"
	if err := b.store.RecordAttempt(b.ctx, task.ID, task.Token, "", strings.Repeat(line, 70)); err != nil {
		t.Fatal(err)
	}
	got := logs()
	if len(got) > MaxLogBytes || len(got) < MaxLogBytes-len(line) {
		t.Fatalf("logs are %d bytes, want at most MaxLogBytes=%d and near it", len(got), MaxLogBytes)
	}
	if !strings.HasPrefix(got, "xxx") || strings.Contains(got, "attempt") {
		t.Fatalf("capped logs start %q: want whole lines, the oldest gone", got[:40])
	}
}

func TestQueueDepthsEveryNamespace(t *testing.T) {
	b := setup(t)
	for _, l := range []Lambda{{Namespace: ns, Name: "a"}, {Namespace: "team2", Name: "b"}} {
		l.SHA256 = "s"
		if _, err := b.store.DeployLambda(b.ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.rdb.LPush(b.ctx, b.store.QueueKey("team2", "b", 7), "t1", "t2").Err(); err != nil {
		t.Fatal(err)
	}
	ds, err := b.store.QueueDepths(b.ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 20 {
		t.Fatalf("%d depths, want 10 priorities of 2 lambdas: %+v", len(ds), ds)
	}
	for _, d := range ds {
		want := int64(0)
		if d.Namespace == "team2" && d.Lambda == "b" && d.Priority == 7 {
			want = 2
		}
		if d.Length != want || (d.Namespace == ns) != (d.Lambda == "a") {
			t.Errorf("depth %+v, want length %d", d, want)
		}
	}
}
