package store

import (
	"slices"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// TestProcessDue walks each row of the state table with the test clock.
func TestProcessDue(t *testing.T) {
	b := setup(t)

	t.Run("new becomes enqueued when due", func(t *testing.T) {
		at := b.clock.Now().Add(time.Minute)
		task := b.schedule(t, NewTask{ExecuteAt: at, Priority: 2})
		p, _ := b.store.PartitionOf(task.ID)
		n, next, err := b.store.ProcessDue(b.ctx, p, timeouts, 100)
		if err != nil || n != 0 || !next.Equal(at) {
			t.Fatalf("before due: moved %d next %s (want %s) %v", n, next, at, err)
		}
		b.clock.Advance(time.Minute)
		n, next, err = b.store.ProcessDue(b.ctx, p, timeouts, 100)
		if err != nil || n != 1 {
			t.Fatalf("when due: moved %d %v", n, err)
		}
		now := b.clock.Now()
		if !next.Equal(now.Add(enqueueTmo)) {
			t.Fatalf("next %s, want the enqueue timeout %s", next, now.Add(enqueueTmo))
		}
		got := b.get(t, task.ID)
		wantState(t, got, atfv1.TaskState_TASK_STATE_ENQUEUED)
		if !got.EnqueuedAt.Equal(now) {
			t.Fatalf("EnqueuedAt %s", got.EnqueuedAt)
		}
		if q := b.queue(t, 2); !slices.Equal(q, []string{task.ID}) {
			t.Fatalf("queue %v", q)
		}
		b.wantTrigger(t, task.ID, now.Add(enqueueTmo))
		b.claim(t, task.ID) // out of the way of the next rows
	})

	t.Run("enqueued past the enqueue timeout is pushed again", func(t *testing.T) {
		task := b.schedule(t, NewTask{Priority: 5})
		b.rdb.Del(b.ctx, b.store.QueueKey(ns, "echo", 5)) // the push was lost
		b.clock.Advance(enqueueTmo)
		b.processAll(t)
		got := b.get(t, task.ID)
		wantState(t, got, atfv1.TaskState_TASK_STATE_ENQUEUED)
		if q := b.queue(t, 5); !slices.Equal(q, []string{task.ID}) {
			t.Fatalf("queue %v", q)
		}
		b.wantTrigger(t, task.ID, b.clock.Now().Add(enqueueTmo))
		if !got.EnqueuedAt.Equal(b.clock.Now()) {
			t.Fatalf("enqueued at %s, want the push again, %s", got.EnqueuedAt, b.clock.Now())
		}
		b.claim(t, task.ID)
	})

	t.Run("claimed past the claim timeout is enqueued, attempt not counted", func(t *testing.T) {
		task := b.schedule(t, NewTask{Priority: 6})
		b.claim(t, task.ID)
		b.clock.Advance(claimTmo - time.Millisecond)
		b.processAll(t)
		wantState(t, b.get(t, task.ID), atfv1.TaskState_TASK_STATE_CLAIMED)
		b.clock.Advance(time.Millisecond)
		b.processAll(t)
		b.wantClaimTimedOut(t, task.ID, 6)
		b.claim(t, task.ID)
	})

	t.Run("claimed and cancelled past the claim timeout ends cancelled, never run again", func(t *testing.T) {
		// Its claimer died (or an executor held it for its execute_at and
		// stopped) after the cancel: re-enqueued, it would start again
		// and run until its first heartbeat said cancel.
		task := b.schedule(t, NewTask{Priority: 3})
		b.claim(t, task.ID)
		if got, err := b.store.Cancel(b.ctx, ns, task.ID); err != nil || got.State != atfv1.TaskState_TASK_STATE_CLAIMED || !got.CancelRequested {
			t.Fatalf("Cancel: %+v %v", got, err)
		}
		b.clock.Advance(claimTmo)
		b.processAll(t)
		got := b.get(t, task.ID)
		wantState(t, got, atfv1.TaskState_TASK_STATE_CANCELLED)
		if got.Attempt != 0 || got.FinishedAt.IsZero() {
			t.Fatalf("attempt %d finished %s, want 0 (never started) and set", got.Attempt, got.FinishedAt)
		}
		if q := b.queue(t, 3); !slices.Equal(q, []string{task.ID}) { // the schedule's push only
			t.Fatalf("queue %v, want nothing pushed again", q)
		}
		b.wantNoTrigger(t, task.ID)
	})

	t.Run("processing past the heartbeat timeout is enqueued with an error", func(t *testing.T) {
		task := b.running(t, NewTask{MaxAttempts: 2, Priority: 7})
		b.clock.Advance(heartbeatTmo)
		b.processAll(t)
		got := b.get(t, task.ID)
		wantState(t, got, atfv1.TaskState_TASK_STATE_ENQUEUED)
		if got.Attempt != 1 || got.Error.GetKind() != atfv1.ErrorKind_ERROR_KIND_HEARTBEAT_TIMEOUT ||
			got.Error.GetMessage() != "executor stopped heartbeating" || got.Error.GetAttempt() != 1 || got.Error.GetAttemptsExhausted() {
			t.Fatalf("after heartbeat timeout: attempt %d error %v", got.Attempt, got.Error)
		}
		b.wantTrigger(t, task.ID, b.clock.Now().Add(enqueueTmo))
		// The old executor is told its claim is gone.
		b.beat(t, task, atfv1.Directive_DIRECTIVE_CLAIM_LOST)

		t.Run("at max attempts it is a dead letter", func(t *testing.T) {
			second := b.claim(t, task.ID)
			b.beat(t, second, atfv1.Directive_DIRECTIVE_CONTINUE)
			b.clock.Advance(heartbeatTmo)
			b.processAll(t)
			got := b.get(t, task.ID)
			wantState(t, got, atfv1.TaskState_TASK_STATE_FATAL_FAILURE)
			if !got.Error.GetAttemptsExhausted() || got.Error.GetAttempt() != 2 || got.FinishedAt.IsZero() {
				t.Fatalf("dead letter: %+v %v", got, got.Error)
			}
			b.wantNoTrigger(t, task.ID)
		})
	})

	t.Run("processing with cancel requested ends cancelled", func(t *testing.T) {
		task := b.running(t, NewTask{})
		if _, err := b.store.Cancel(b.ctx, ns, task.ID); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(heartbeatTmo)
		b.processAll(t)
		got := b.get(t, task.ID)
		wantState(t, got, atfv1.TaskState_TASK_STATE_CANCELLED)
		if got.FinishedAt.IsZero() {
			t.Fatal("FinishedAt unset")
		}
		b.wantNoTrigger(t, task.ID)
	})

	t.Run("retriable failure is enqueued when due", func(t *testing.T) {
		task := b.running(t, NewTask{Priority: 8})
		if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY,
			RetryAt: b.clock.Now().Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
		b.clock.Advance(time.Second)
		b.processAll(t)
		wantState(t, b.get(t, task.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
		if q := b.queue(t, 8); !slices.Equal(q, []string{task.ID, task.ID}) {
			t.Fatalf("queue %v", q)
		}
	})
}

func TestProcessDueLimitAndStale(t *testing.T) {
	b := setup(t)
	var ids []string
	at := b.clock.Now().Add(time.Second)
	p := -1
	for i := 0; len(ids) < 5; i++ {
		// keyed, so that all land in one partition
		k := "k" + time.Duration(i).String()
		if q := b.store.partitionFor(ns, "echo", k); p < 0 || q == p {
			p = q
			ids = append(ids, b.schedule(t, NewTask{Key: k, ExecuteAt: at}).ID)
		}
	}
	// A trigger whose task expired is dropped without counting.
	if err := b.rdb.ZAdd(b.ctx, triggerKey(p), redisZ(at, "00"+"01hzy3xq8k2m4n6p8r0t2v4w6y")).Err(); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Second)
	n, next, err := b.store.ProcessDue(b.ctx, p, timeouts, 3)
	// The limit caps the triggers read, the stale one among them.
	if err != nil || n != 2 || !next.Equal(at) {
		t.Fatalf("first pass: moved %d next %s %v; want 2 and more due at %s", n, next, err, at)
	}
	n, next, err = b.store.ProcessDue(b.ctx, p, timeouts, 3)
	if err != nil || n != 3 || !next.Equal(b.clock.Now().Add(enqueueTmo)) {
		t.Fatalf("second pass: moved %d next %s %v", n, next, err)
	}
	if q := b.queue(t, 0); len(q) != 5 {
		t.Fatalf("queue %v", q)
	}
	if _, _, err := b.store.ProcessDue(b.ctx, 99, timeouts, 3); err == nil {
		t.Fatal("ProcessDue of a partition out of range")
	}
	empty := (p + 1) % b.store.Partitions()
	if n, next, err := b.store.ProcessDue(b.ctx, empty, timeouts, 3); err != nil || n != 0 || !next.IsZero() {
		t.Fatalf("empty partition: %d %s %v", n, next, err)
	}
}

// TestClaimKeepsEnqueueTrigger: with an enqueue timeout no longer than the
// claim timeout (the defaults: 30s both), a claim leaves the task's
// enqueue trigger in place — one sorted-set write less per task — and the
// consumer, finding the claim alive there, moves the trigger to the
// claim's deadline; past it the task is enqueued again as ever.
func TestClaimKeepsEnqueueTrigger(t *testing.T) {
	b := setup(t)
	const enqueue, claim = 5 * time.Second, 30 * time.Second
	b.store = New(b.rdb, Options{Partitions: 4, Retention: time.Hour, Now: b.clock.Now, EnqueueTimeout: enqueue})
	tmo := Timeouts{Enqueue: enqueue, Claim: claim, Heartbeat: heartbeatTmo}
	task := b.schedule(t, NewTask{Priority: 4})
	enqueuedTill := b.clock.Now().Add(enqueue)
	b.clock.Advance(time.Second)
	got, err := b.store.Claim(b.ctx, []ClaimRequest{{TaskID: task.ID, LambdaVersion: 1}}, claim)
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim: %v %v", got, err)
	}
	claimedTill := b.clock.Now().Add(claim)
	b.wantTrigger(t, task.ID, enqueuedTill)
	// A first claim does not read when the task was enqueued (nothing is
	// reckoned from it); its pickup counts from when it was due.
	if !got[0].EnqueuedAt.IsZero() || !got[0].DueAt().Equal(task.CreatedAt) {
		t.Fatalf("first claim: enqueued %s due %s, want none and %s", got[0].EnqueuedAt, got[0].DueAt(), task.CreatedAt)
	}
	// It writes its version and time in "lv" and the token, no "ua" and
	// no "att" (claimVersion); the task reads as updated then, attempt 1.
	p := mustPart(t, b, task.ID)
	if f := b.rdb.HMGet(b.ctx, taskKey(p, task.ID), fUpdatedAt, fAttempt, fVersion).Val(); f[0] != nil || f[1] != nil || f[2] != "1 "+ms(b.clock.Now()) {
		t.Fatalf("claimed task's ua, att, lv: %v", f)
	}
	if c := b.get(t, task.ID); !c.UpdatedAt.Equal(b.clock.Now()) || c.Attempt != 1 || c.Token != 1 || c.LambdaVersion != 1 {
		t.Fatalf("claimed: updated %s attempt %d token %d version %d", c.UpdatedAt, c.Attempt, c.Token, c.LambdaVersion)
	}

	process := func() {
		t.Helper()
		for p := range b.store.Partitions() {
			if _, _, err := b.store.ProcessDue(b.ctx, p, tmo, 100); err != nil {
				t.Fatal(err)
			}
		}
	}
	// At the enqueue trigger the claim is alive: nothing pushed, the
	// trigger moves to the claim's deadline.
	b.clock.Advance(enqueue)
	process()
	wantState(t, b.get(t, task.ID), atfv1.TaskState_TASK_STATE_CLAIMED)
	if q := b.queue(t, 4); !slices.Equal(q, []string{task.ID}) { // the schedule's push, not popped here
		t.Fatalf("queue %v, want nothing more pushed", q)
	}
	b.wantTrigger(t, task.ID, claimedTill)
	// Past the deadline it is enqueued again, the attempt not counted.
	b.clock.Advance(claimedTill.Sub(b.clock.Now()))
	process()
	b.wantClaimTimedOut(t, task.ID, 4)
	b.wantTrigger(t, task.ID, b.clock.Now().Add(enqueue))

	// A claim timeout shorter than what is left of the enqueue trigger
	// moves the trigger to the claim's deadline at once; a result removes
	// it.
	requeued := b.clock.Now()
	second, err := b.store.Claim(b.ctx, []ClaimRequest{{TaskID: task.ID, LambdaVersion: 1}}, time.Second)
	if err != nil || len(second) != 1 {
		t.Fatalf("second Claim: %v %v", second, err)
	}
	if !second[0].EnqueuedAt.Equal(requeued) || second[0].Token != 2 || second[0].Attempt != 1 {
		t.Fatalf("second claim: enqueued %s token %d attempt %d, want %s, 2, 1 (the first was not counted)",
			second[0].EnqueuedAt, second[0].Token, second[0].Attempt, requeued)
	}
	b.wantTrigger(t, task.ID, b.clock.Now().Add(time.Second))
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: second[0].Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
		t.Fatal(err)
	}
	b.wantNoTrigger(t, task.ID)
}

// wantClaimTimedOut: a task scheduled due now (one push) and claimed once,
// whose claim timed out, is ENQUEUED again and pushed again, its attempt
// uncounted and its token that of the lost claim.
func (b *testBundle) wantClaimTimedOut(t *testing.T, id string, priority int) {
	t.Helper()
	got := b.get(t, id)
	wantState(t, got, atfv1.TaskState_TASK_STATE_ENQUEUED)
	if got.Attempt != 0 || got.Token != 1 {
		t.Fatalf("attempt %d token %d, want 0 and 1", got.Attempt, got.Token)
	}
	if q := b.queue(t, priority); !slices.Equal(q, []string{id, id}) {
		t.Fatalf("queue %v, want the task pushed twice", q)
	}
}
