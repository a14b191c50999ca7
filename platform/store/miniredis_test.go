package store

import (
	"slices"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// The tests here run every script on miniredis (gopher-lua), which `atf
// dev` falls back to without redis-server, and on redis-server alike.

func TestLifecycleRedis(t *testing.T)     { testLifecycle(t, setup(t)) }
func TestLifecycleMiniredis(t *testing.T) { testLifecycle(t, setupMiniredis(t)) }
func TestPopMiniredis(t *testing.T)       { testPop(t, setupMiniredis(t)) }

func testLifecycle(t *testing.T, b *testBundle) {
	ctx := b.ctx
	l, err := b.store.DeployLambda(ctx, Lambda{Namespace: ns, Name: "echo", SHA256: "s"})
	if err != nil || l.Version != 1 {
		t.Fatalf("DeployLambda: %+v %v", l, err)
	}
	if l, err = b.store.DeployLambda(ctx, Lambda{Namespace: ns, Name: "echo", SHA256: "s"}); err != nil || l.Version != 2 {
		t.Fatalf("DeployLambda again: %+v %v", l, err)
	}
	if err := b.store.DeleteLambda(ctx, ns, "gone"); err == nil {
		t.Fatal("DeleteLambda of a missing lambda")
	}

	wake := b.store.Wakeups(t.Context())
	at := b.clock.Now().Add(5 * time.Second) // within MaxSweep: a wake-up
	task := b.schedule(t, NewTask{ExecuteAt: at, Key: "k", Payload: []byte("p"), MaxAttempts: 2})
	p, _ := b.store.PartitionOf(task.ID)
	select {
	case got := <-wake:
		if got != p {
			t.Fatalf("wakeup %d, want %d", got, p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no wakeup")
	}
	if _, dedup, err := b.store.Schedule(ctx, NewTask{Namespace: ns, Lambda: "echo", Key: "k"}); err != nil || !dedup {
		t.Fatalf("dedup: %v %v", dedup, err)
	}

	b.clock.Advance(time.Minute)
	if n, _, err := b.store.ProcessDue(ctx, p, timeouts, 10); err != nil || n != 1 {
		t.Fatalf("ProcessDue: %d %v", n, err)
	}
	popped, err := b.store.Pop(ctx, []PopLambda{b.popLambda("echo", 0)}, 5, 50*time.Millisecond, "")
	if err != nil || len(popped) != 1 || popped[0].TaskID != task.ID {
		t.Fatalf("Pop: %v %v", popped, err)
	}
	claimed, err := b.store.Claim(ctx, []ClaimRequest{{TaskID: task.ID, LambdaVersion: 2}, {TaskID: task.ID, LambdaVersion: 2}}, claimTmo)
	if err != nil || len(claimed) != 1 || claimed[0].LambdaVersion != 2 || string(claimed[0].Payload) != "p" {
		t.Fatalf("Claim: %+v %v", claimed, err)
	}
	run := claimed[0]
	d, err := b.store.Heartbeat(ctx, []Beat{{TaskID: task.ID, Token: run.Token, Progress: 10}, {TaskID: task.ID, Token: 99, Progress: -1}}, heartbeatTmo)
	if err != nil || !slices.Equal(d, []atfv1.Directive{atfv1.Directive_DIRECTIVE_CONTINUE, atfv1.Directive_DIRECTIVE_CLAIM_LOST}) {
		t.Fatalf("Heartbeat: %v %v", d, err)
	}

	// Heartbeat timeout: enqueued again with the error.
	b.clock.Advance(heartbeatTmo)
	if _, _, err := b.store.ProcessDue(ctx, p, timeouts, 10); err != nil {
		t.Fatal(err)
	}
	got := b.get(t, task.ID)
	if got.State != atfv1.TaskState_TASK_STATE_ENQUEUED || got.Error.GetKind() != atfv1.ErrorKind_ERROR_KIND_HEARTBEAT_TIMEOUT || got.Error.GetAttempt() != 1 {
		t.Fatalf("after heartbeat timeout: %+v %v", got, got.Error)
	}

	// Last attempt: RETRY makes a dead letter; Retry runs it again.
	run = b.claim(t, task.ID)
	if _, err := b.store.SetResult(ctx, Result{TaskID: task.ID, Token: run.Token - 1, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err == nil {
		t.Fatal("stale token accepted")
	}
	st, err := b.store.SetResult(ctx, Result{TaskID: task.ID, Token: run.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY, Error: &atfv1.TaskError{Message: "again"}})
	if err != nil || st != atfv1.TaskState_TASK_STATE_FATAL_FAILURE {
		t.Fatalf("SetResult: %s %v", st, err)
	}
	got = b.get(t, task.ID)
	if !got.Error.GetAttemptsExhausted() || got.Error.GetAttempt() != 2 {
		t.Fatalf("dead letter error: %v", got.Error)
	}
	if !got.FinishedAt.Equal(b.clock.Now()) {
		t.Fatalf("dead letter finished at %s", got.FinishedAt)
	}
	if _, err := b.store.Retry(ctx, ns, task.ID); err != nil {
		t.Fatal(err)
	}
	run = b.claim(t, task.ID)
	if _, err := b.store.Cancel(ctx, ns, task.ID); err != nil {
		t.Fatal(err)
	}
	b.beat(t, run, atfv1.Directive_DIRECTIVE_CANCEL)
	if st, err := b.store.SetResult(ctx, Result{TaskID: task.ID, Token: run.Token, Outcome: atfv1.Outcome_OUTCOME_CANCELLED}); err != nil || st != atfv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("cancelled: %s %v", st, err)
	}

	tasks, next, err := b.store.ListTasks(ctx, ListFilter{Namespace: ns, Lambda: "echo", State: atfv1.TaskState_TASK_STATE_CANCELLED})
	if err != nil || next != "" || len(tasks) != 1 || tasks[0].ID != task.ID {
		t.Fatalf("ListTasks: %v %q %v", tasks, next, err)
	}
}
