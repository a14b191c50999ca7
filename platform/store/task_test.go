package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/redis/go-redis/v9"
)

func TestScheduleNow(t *testing.T) {
	b := setup(t)
	task := b.schedule(t, NewTask{Payload: []byte("hi"), Priority: 3, Collection: "c", TraceParent: "00-abc-def-01", MaxAttempts: 4})
	wantState(t, task, atfv1.TaskState_TASK_STATE_ENQUEUED)
	now := b.clock.Now()
	if !task.EnqueuedAt.Equal(now) || !task.CreatedAt.Equal(now) || !task.ExecuteAt.Equal(now) {
		t.Fatalf("times: %+v", task)
	}
	got := b.get(t, task.ID)
	if string(got.Payload) != "hi" || got.Priority != 3 || got.Collection != "c" || got.TraceParent != "00-abc-def-01" ||
		got.MaxAttempts != 4 || got.Attempt != 0 || got.Namespace != ns || got.Lambda != "echo" {
		t.Fatalf("GetTask: %+v", got)
	}
	if q := b.queue(t, 3); !slices.Equal(q, []string{task.ID}) {
		t.Fatalf("queue = %v", q)
	}
	b.wantTrigger(t, task.ID, now.Add(enqueueTmo))

	// id: 2 hex digits of the partition, then a lowercase ULID.
	p, err := b.store.PartitionOf(task.ID)
	if err != nil || len(task.ID) != 28 || task.ID != strings.ToLower(task.ID) {
		t.Fatalf("id %q: partition %d, %v", task.ID, p, err)
	}
}

// TestScheduleReturnsStoredTask: what Schedule and ScheduleBatch return is
// the task as GetTask reads it back (Schedule builds it without reading).
func TestScheduleReturnsStoredTask(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	b.clock.Advance(700 * time.Microsecond) // not a whole millisecond
	now := b.clock.Now()
	for i, nt := range []NewTask{
		{},
		{Payload: []byte("p"), Priority: 9, Collection: "c", TraceParent: "00-abc-def-01", MaxAttempts: 2},
		{Key: "k1", ExecuteAt: now.Add(1500 * time.Microsecond)},
		{ExecuteAt: now.Add(-time.Second)},
		{ExecuteAt: now.Add(time.Hour), Payload: []byte("later")},
	} {
		nt.Namespace, nt.Lambda = ns, "echo"
		got := b.schedule(t, nt)
		batch, err := b.store.ScheduleBatch(ctx, []NewTask{nt})
		if err != nil {
			t.Fatal(err)
		}
		for _, sched := range []Task{got, batch[0].Task} {
			stored := b.get(t, sched.ID)
			if fmt.Sprintf("%+v", sched) != fmt.Sprintf("%+v", stored) {
				t.Errorf("task %d:\nscheduled %+v\nstored    %+v", i, sched, stored)
			}
		}
	}
}

func TestScheduleLater(t *testing.T) {
	b := setup(t)
	wake := b.store.Wakeups(t.Context())
	// Past MaxSweep and its slack, no wake-up: the consumer looks at the
	// partition before the task is due anyway.
	far := b.schedule(t, NewTask{ExecuteAt: b.clock.Now().Add(MaxSweep + time.Second)})
	b.wantTrigger(t, far.ID, b.clock.Now().Add(MaxSweep+time.Second))
	select {
	case got := <-wake:
		t.Fatalf("wakeup for partition %d for a task due past MaxSweep", got)
	case <-time.After(100 * time.Millisecond):
	}
	// Within it, a wake-up when the partition had no earlier trigger.
	at := b.clock.Now().Add(5 * time.Second)
	task := b.schedule(t, NewTask{ExecuteAt: at})
	wantState(t, task, atfv1.TaskState_TASK_STATE_NEW)
	if q := b.queue(t, 0); len(q) != 0 {
		t.Fatalf("queue = %v, want empty", q)
	}
	b.wantTrigger(t, task.ID, at)
	p, _ := b.store.PartitionOf(task.ID)
	select {
	case got := <-wake:
		if got != p {
			t.Fatalf("wakeup for partition %d, want %d", got, p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no wakeup for a task scheduled later")
	}
	// A trigger later than the partition's earliest wakes no one; an
	// earlier one does.
	same := func(after time.Duration) NewTask {
		for i := 0; ; i++ {
			k := fmt.Sprintf("key-%d-%s", i, after)
			if b.store.partitionFor(ns, "echo", k) == p {
				return NewTask{Key: k, ExecuteAt: at.Add(after)}
			}
		}
	}
	b.schedule(t, same(time.Second))
	select {
	case got := <-wake:
		t.Fatalf("wakeup for partition %d after a later trigger", got)
	case <-time.After(100 * time.Millisecond):
	}
	b.schedule(t, same(-time.Second))
	select {
	case got := <-wake:
		if got != p {
			t.Fatalf("wakeup for partition %d, want %d", got, p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no wakeup for an earlier trigger")
	}
}

// TestDispatchLead: with a dispatch lead, a scheduled task's trigger is
// its execute_at less the lead, one due within the lead is enqueued at
// once, and either keeps its execute_at for the executor to wait for.
func TestDispatchLead(t *testing.T) {
	b := setup(t)
	const lead = 50 * time.Millisecond
	b.store = New(b.rdb, Options{Partitions: 4, Retention: time.Hour, Now: b.clock.Now, EnqueueTimeout: enqueueTmo, DispatchLead: lead})
	now := b.clock.Now()

	soon := b.schedule(t, NewTask{ExecuteAt: now.Add(lead)}) // due within the lead
	wantState(t, soon, atfv1.TaskState_TASK_STATE_ENQUEUED)
	if !soon.EnqueuedAt.Equal(now) || !soon.ExecuteAt.Equal(now.Add(lead)) {
		t.Fatalf("due within the lead: enqueued %s execute_at %s, want %s and %s", soon.EnqueuedAt, soon.ExecuteAt, now, now.Add(lead))
	}
	b.wantTrigger(t, soon.ID, now.Add(enqueueTmo))

	at := now.Add(time.Second)
	later := b.schedule(t, NewTask{ExecuteAt: at})
	wantState(t, later, atfv1.TaskState_TASK_STATE_NEW)
	b.wantTrigger(t, later.ID, at.Add(-lead))
	b.clock.Advance(time.Second - lead - time.Millisecond)
	if n := b.processAll(t); n != 0 {
		t.Fatalf("a pass %s before the trigger moved %d tasks", time.Millisecond, n)
	}
	b.clock.Advance(time.Millisecond)
	if n := b.processAll(t); n != 1 {
		t.Fatalf("a pass at the trigger moved %d tasks, want 1", n)
	}
	if q := b.queue(t, 0); !slices.Contains(q, later.ID) || !slices.Contains(q, soon.ID) {
		t.Fatalf("queue = %v, want both %s and %s", q, soon.ID, later.ID)
	}
	// The claim hands out the task's execute_at, not the time it was enqueued.
	if got := b.claim(t, later.ID); !got.ExecuteAt.Equal(at) || !got.EnqueuedAt.Equal(at.Add(-lead)) {
		t.Fatalf("claimed: execute_at %s enqueued %s, want %s and %s", got.ExecuteAt, got.EnqueuedAt, at, at.Add(-lead))
	}

	// A batch follows the same rule.
	res, err := b.store.ScheduleBatch(b.ctx, []NewTask{
		{Namespace: ns, Lambda: "echo", ExecuteAt: b.clock.Now().Add(lead / 2)},
		{Namespace: ns, Lambda: "echo", ExecuteAt: b.clock.Now().Add(time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, res[0].Task, atfv1.TaskState_TASK_STATE_ENQUEUED)
	wantState(t, res[1].Task, atfv1.TaskState_TASK_STATE_NEW)
	b.wantTrigger(t, res[1].Task.ID, b.clock.Now().Add(time.Minute-lead))
}

func TestWakeupsClosesWithContext(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	wake := b.store.Wakeups(ctx)
	cancel()
	select {
	case _, ok := <-wake:
		if ok {
			t.Fatal("value after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wakeups channel not closed after its context ended")
	}
}

func TestDedupByKey(t *testing.T) {
	b := setup(t)
	first := b.schedule(t, NewTask{Key: "order-1", Payload: []byte("a")})
	again, dedup, err := b.store.Schedule(b.ctx, NewTask{Namespace: ns, Lambda: "echo", Key: "order-1", Payload: []byte("b")})
	if err != nil || !dedup || again.ID != first.ID || string(again.Payload) != "a" {
		t.Fatalf("second Schedule: %s dedup=%v %v", again.ID, dedup, err)
	}
	other := b.schedule(t, NewTask{Key: "order-2"})
	if other.ID == first.ID {
		t.Fatal("different keys share a task")
	}
	// Other lambdas and namespaces have their own keys.
	b.schedule(t, NewTask{Lambda: "other", Key: "order-1"})
	b.schedule(t, NewTask{Namespace: "team", Key: "order-1"})
	if q := b.queue(t, 0); len(q) != 2 {
		t.Fatalf("queue = %v, want the two echo tasks once each", q)
	}

	// A finished task still holds its key for the retention...
	claimed := b.claim(t, first.ID)
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: first.ID, Token: claimed.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
		t.Fatal(err)
	}
	again, dedup, err = b.store.Schedule(b.ctx, NewTask{Namespace: ns, Lambda: "echo", Key: "order-1"})
	if err != nil || !dedup || again.ID != first.ID || again.State != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("Schedule after success: %+v dedup=%v %v", again, dedup, err)
	}
	// ...and once it is gone the key is free.
	p, _ := b.store.PartitionOf(first.ID)
	if err := b.rdb.Del(b.ctx, taskKey(p, first.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	fresh := b.schedule(t, NewTask{Key: "order-1"})
	if fresh.ID == first.ID {
		t.Fatal("expired task still deduplicates")
	}
	if fp, _ := b.store.PartitionOf(fresh.ID); fp != p {
		t.Fatalf("same key in partition %d then %d", p, fp)
	}
}

func TestScheduleInvalid(t *testing.T) {
	b := setup(t)
	if _, _, err := b.store.Schedule(b.ctx, NewTask{Namespace: ns, Lambda: "echo", Priority: 10}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("priority 10: %v", err)
	}
	// The work field's head ends the lambda's name with a NUL byte.
	if _, _, err := b.store.Schedule(b.ctx, NewTask{Namespace: ns, Lambda: "ec\x00ho"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a lambda name with a NUL byte: %v", err)
	}
}

func TestGetTaskNotFound(t *testing.T) {
	b := setup(t)
	task := b.schedule(t, NewTask{})
	for _, id := range []string{"", "nope", "zz01hzy3xq8k2m4n6p8r0t2v4w6y", "0001HZY3XQ8K2M4N6P8R0T2V4W6Y", "ff01hzy3xq8k2m4n6p8r0t2v4w6y"} {
		_, err := b.store.GetTask(b.ctx, ns, id)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not an atf task id") {
			t.Errorf("GetTask(%q): %v", id, err)
		}
	}
	missing := task.ID[:2] + "01hzy3xq8k2m4n6p8r0t2v4w6y"
	if _, err := b.store.GetTask(b.ctx, ns, missing); !errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), "not an atf") {
		t.Errorf("GetTask(missing): %v", err)
	}
	if _, err := b.store.GetTask(b.ctx, "team", task.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetTask from another namespace: %v", err)
	}
}

func TestClaimAndFencing(t *testing.T) {
	b := setup(t)
	task := b.schedule(t, NewTask{Payload: []byte("p")})
	b.clock.Advance(time.Second)
	claimed := b.claim(t, task.ID)
	wantState(t, claimed, atfv1.TaskState_TASK_STATE_CLAIMED)
	if claimed.Attempt != 1 || claimed.Token != 1 || claimed.LambdaVersion != 1 || string(claimed.Payload) != "p" {
		t.Fatalf("claimed: %+v", claimed)
	}
	b.wantTrigger(t, task.ID, b.clock.Now().Add(claimTmo))

	// A duplicate queue entry, a malformed id and a missing task are skipped.
	got, err := b.store.Claim(b.ctx, []ClaimRequest{{TaskID: task.ID}, {TaskID: "bad"}, {TaskID: task.ID[:2] + "01hzy3xq8k2m4n6p8r0t2v4w6y"}}, claimTmo)
	if err != nil || len(got) != 0 {
		t.Fatalf("second Claim: %v, %v", got, err)
	}

	// The claim times out and someone else claims the task: the first
	// claimer's token is stale and its result changes nothing.
	b.clock.Advance(claimTmo)
	b.processAll(t)
	second := b.claim(t, task.ID)
	if second.Token != 2 || second.Attempt != 1 {
		t.Fatalf("second claim: token %d attempt %d", second.Token, second.Attempt)
	}
	before := b.get(t, task.ID)
	_, err = b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: claimed.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: []byte("stale")})
	if !errors.Is(err, ErrClaimLost) {
		t.Fatalf("stale SetResult: %v, want ErrClaimLost", err)
	}
	after := b.get(t, task.ID)
	if after.State != before.State || after.Output != nil || !after.UpdatedAt.Equal(before.UpdatedAt) || !after.FinishedAt.IsZero() {
		t.Fatalf("stale SetResult changed the task: %+v", after)
	}
	b.beat(t, claimed, atfv1.Directive_DIRECTIVE_CLAIM_LOST)

	// The current claim's result counts.
	st, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: second.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS,
		Output: []byte("out"), OutputTruncated: true, Duration: 1500 * time.Microsecond})
	if err != nil || st != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("SetResult: %s, %v", st, err)
	}
	done := b.get(t, task.ID)
	if string(done.Output) != "out" || !done.OutputTruncated || done.Duration != 1500*time.Microsecond ||
		!done.FinishedAt.Equal(b.clock.Now()) || !done.StartedAt.Equal(b.clock.Now().Add(-time.Millisecond)) {
		// Never heartbeaten: it started its duration (1.5ms, rounded up to
		// the millisecond: never before its real start) before it finished.
		t.Fatalf("after SetResult: %+v", done)
	}
	// That start is not stored: it is the finish less the duration.
	if p, _ := b.store.PartitionOf(task.ID); b.rdb.HExists(b.ctx, taskKey(p, task.ID), fStartedAt).Val() {
		t.Errorf("a task finished without a heartbeat stored its start")
	}
	b.wantNoTrigger(t, task.ID)
	// A second result, even with the right token, is refused: the task ended.
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: second.Token, Outcome: atfv1.Outcome_OUTCOME_FATAL}); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("SetResult after the end: %v", err)
	}
}

func TestHeartbeat(t *testing.T) {
	b := setup(t)
	task := b.schedule(t, NewTask{})
	claimed := b.claim(t, task.ID)
	b.clock.Advance(2 * time.Second)
	d, err := b.store.Heartbeat(b.ctx, []Beat{
		{TaskID: task.ID, Token: claimed.Token, Progress: 40},
		{TaskID: task.ID, Token: claimed.Token + 1, Progress: 90}, // not the claim
		{TaskID: "bad", Token: 1, Progress: -1},
	}, heartbeatTmo)
	if err != nil {
		t.Fatal(err)
	}
	want := []atfv1.Directive{atfv1.Directive_DIRECTIVE_CONTINUE, atfv1.Directive_DIRECTIVE_CLAIM_LOST, atfv1.Directive_DIRECTIVE_CLAIM_LOST}
	if !slices.Equal(d, want) {
		t.Fatalf("directives %v, want %v", d, want)
	}
	got := b.get(t, task.ID)
	wantState(t, got, atfv1.TaskState_TASK_STATE_PROCESSING)
	if got.Progress != 40 || !got.StartedAt.Equal(b.clock.Now()) {
		t.Fatalf("after first beat: progress %d started %s", got.Progress, got.StartedAt)
	}
	b.wantTrigger(t, task.ID, b.clock.Now().Add(heartbeatTmo))

	// Progress -1 keeps the stored one; StartedAt stays the first beat's.
	started := got.StartedAt
	b.clock.Advance(time.Second)
	b.beat(t, claimed, atfv1.Directive_DIRECTIVE_CONTINUE)
	got = b.get(t, task.ID)
	if got.Progress != 40 || !got.StartedAt.Equal(started) {
		t.Fatalf("after second beat: progress %d started %s", got.Progress, got.StartedAt)
	}
	b.wantTrigger(t, task.ID, b.clock.Now().Add(heartbeatTmo))

	// Cancel requested: the next beat says CANCEL, the executor reports it.
	if _, err := b.store.Cancel(b.ctx, ns, task.ID); err != nil {
		t.Fatal(err)
	}
	b.beat(t, claimed, atfv1.Directive_DIRECTIVE_CANCEL)
	st, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: claimed.Token, Outcome: atfv1.Outcome_OUTCOME_CANCELLED})
	if err != nil || st != atfv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("SetResult(CANCELLED): %s %v", st, err)
	}
	// After the task ended CANCELLED, a late beat still says CANCEL.
	b.beat(t, claimed, atfv1.Directive_DIRECTIVE_CANCEL)

	// A task that finished otherwise answers CLAIM_LOST.
	other := b.running(t, NewTask{})
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: other.ID, Token: other.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
		t.Fatal(err)
	}
	b.beat(t, other, atfv1.Directive_DIRECTIVE_CLAIM_LOST)
}

func TestSetResultOutcomes(t *testing.T) {
	b := setup(t)
	fatal := b.running(t, NewTask{})
	exit := int32(1)
	st, err := b.store.SetResult(b.ctx, Result{TaskID: fatal.ID, Token: fatal.Token, Outcome: atfv1.Outcome_OUTCOME_FATAL,
		Error: &atfv1.TaskError{Kind: atfv1.ErrorKind_ERROR_KIND_EXIT, Message: "exit code 1", ExitCode: &exit}})
	if err != nil || st != atfv1.TaskState_TASK_STATE_FATAL_FAILURE {
		t.Fatalf("FATAL: %s %v", st, err)
	}
	got := b.get(t, fatal.ID)
	if got.Error == nil || got.Error.GetMessage() != "exit code 1" || got.Error.GetExitCode() != 1 ||
		got.Error.GetAttempt() != 1 || got.Error.GetAttemptsExhausted() {
		t.Fatalf("FATAL error: %v", got.Error)
	}
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: fatal.ID, Token: fatal.Token, Outcome: 99}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown outcome: %v", err)
	}
	// A result straight after the claim (no heartbeat) counts and sets
	// StartedAt.
	quick := b.schedule(t, NewTask{})
	claimed := b.claim(t, quick.ID)
	if st, err := b.store.SetResult(b.ctx, Result{TaskID: quick.ID, Token: claimed.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil || st != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("SUCCESS from CLAIMED: %s %v", st, err)
	}
	if got := b.get(t, quick.ID); got.StartedAt.IsZero() {
		t.Fatal("StartedAt unset")
	}
}

func TestRetryBackoffToDeadLetter(t *testing.T) {
	b := setup(t)
	task := b.running(t, NewTask{MaxAttempts: 2})
	retryAt := b.clock.Now().Add(5 * time.Second)
	st, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY,
		RetryAt: retryAt, Error: &atfv1.TaskError{Kind: atfv1.ErrorKind_ERROR_KIND_EXIT, Message: "exit code 75"}})
	if err != nil || st != atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE {
		t.Fatalf("RETRY: %s %v", st, err)
	}
	got := b.get(t, task.ID)
	if !got.RetryAt.Equal(retryAt) || got.Error.GetAttempt() != 1 || !got.FinishedAt.IsZero() {
		t.Fatalf("after RETRY: %+v", got)
	}
	b.wantTrigger(t, task.ID, retryAt)

	// Not due yet: nothing moves.
	if n := b.processAll(t); n != 0 {
		t.Fatalf("ProcessDue before the backoff moved %d", n)
	}
	b.clock.Advance(5 * time.Second)
	if n := b.processAll(t); n != 1 {
		t.Fatalf("ProcessDue after the backoff moved %d", n)
	}
	wantState(t, b.get(t, task.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
	if q := b.queue(t, 0); !slices.Equal(q, []string{task.ID, task.ID}) {
		t.Fatalf("queue %v, want the task twice (schedule and retry)", q)
	}

	second := b.claim(t, task.ID)
	if second.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", second.Attempt)
	}
	st, err = b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: second.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY,
		RetryAt: b.clock.Now().Add(time.Minute), Error: &atfv1.TaskError{Kind: atfv1.ErrorKind_ERROR_KIND_TIMEOUT, Message: "timeout", Limit: "timeout=1s"}})
	if err != nil || st != atfv1.TaskState_TASK_STATE_FATAL_FAILURE {
		t.Fatalf("last RETRY: %s %v", st, err)
	}
	dead := b.get(t, task.ID)
	if !dead.Error.GetAttemptsExhausted() || dead.Error.GetAttempt() != 2 || dead.Error.GetLimit() != "timeout=1s" || dead.FinishedAt.IsZero() {
		t.Fatalf("dead letter: %+v %v", dead, dead.Error)
	}
	b.wantNoTrigger(t, task.ID)
}

func TestRetention(t *testing.T) {
	b := setup(t)
	task := b.running(t, NewTask{Key: "k"})
	p, _ := b.store.PartitionOf(task.ID)
	for _, k := range []string{taskKey(p, task.ID), dedupKey(p, ns, "echo", "k")} {
		if ttl := b.rdb.PTTL(b.ctx, k).Val(); ttl != -1 {
			t.Fatalf("%s has TTL %s while running", k, ttl)
		}
	}
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
		t.Fatal(err)
	}
	// Kept, with its key mapping, until the retention has run out since
	// it finished: then the trim deletes both.
	if n := b.rdb.Exists(b.ctx, dedupKey(p, ns, "echo", "k")).Val(); n != 1 {
		t.Fatal("key mapping gone at the finish")
	}
	b.wantKeptThenTrimmed(t, task.ID)
	if n := b.rdb.Exists(b.ctx, dedupKey(p, ns, "echo", "k")).Val(); n != 0 {
		t.Fatal("key mapping kept past the task's retention")
	}
	// A task with no key takes the script's short way (a first attempt's
	// success); it is kept for the retention all the same, with its output.
	for _, output := range []string{"", "hello"} {
		plain := b.running(t, NewTask{})
		if _, err := b.store.SetResult(b.ctx, Result{TaskID: plain.ID, Token: plain.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS,
			Output: []byte(output), Duration: 2 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		done := b.get(t, plain.ID)
		if done.State != atfv1.TaskState_TASK_STATE_SUCCESS || string(done.Output) != output || done.OutputTruncated || done.Error != nil ||
			done.Duration != 2*time.Millisecond || !done.FinishedAt.Equal(b.clock.Now()) {
			t.Fatalf("after a first success with output %q: %+v", output, done)
		}
		// Its duration rides in "fa" (finishedAt).
		if b.rdb.HExists(b.ctx, taskKey(mustPart(t, b, plain.ID), plain.ID), fDuration).Val() {
			t.Fatal("a first success wrote a duration field")
		}
		b.wantNoTrigger(t, plain.ID)
		b.wantKeptThenTrimmed(t, plain.ID)
	}
}

func TestCancel(t *testing.T) {
	b := setup(t)
	ctx := b.ctx
	wantCancelled := func(t *testing.T, id string) {
		t.Helper()
		task, err := b.store.Cancel(ctx, ns, id)
		if err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		wantState(t, task, atfv1.TaskState_TASK_STATE_CANCELLED)
		if !task.FinishedAt.Equal(b.clock.Now()) {
			t.Fatalf("FinishedAt %s", task.FinishedAt)
		}
		b.wantNoTrigger(t, id)
		b.wantKeptThenTrimmed(t, id)
	}
	t.Run("new", func(t *testing.T) {
		wantCancelled(t, b.schedule(t, NewTask{ExecuteAt: b.clock.Now().Add(time.Hour)}).ID)
	})
	t.Run("enqueued", func(t *testing.T) {
		task := b.schedule(t, NewTask{})
		wantCancelled(t, task.ID)
		// Its queue entry is left behind and skipped by Claim.
		got, err := b.store.Claim(ctx, []ClaimRequest{{TaskID: task.ID}}, claimTmo)
		if err != nil || len(got) != 0 {
			t.Fatalf("Claim of a cancelled task: %v %v", got, err)
		}
	})
	t.Run("retriable", func(t *testing.T) {
		task := b.running(t, NewTask{})
		if _, err := b.store.SetResult(ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY, RetryAt: b.clock.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		wantCancelled(t, task.ID)
	})
	for _, name := range []string{"claimed", "processing"} {
		t.Run(name, func(t *testing.T) {
			task := b.schedule(t, NewTask{})
			task = b.claim(t, task.ID)
			if name == "processing" {
				b.beat(t, task, atfv1.Directive_DIRECTIVE_CONTINUE)
			}
			before := b.get(t, task.ID)
			got, err := b.store.Cancel(ctx, ns, task.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != before.State || !got.CancelRequested || !got.FinishedAt.IsZero() {
				t.Fatalf("Cancel of a running task: %+v", got)
			}
			b.beat(t, task, atfv1.Directive_DIRECTIVE_CANCEL)
		})
	}
	for _, outcome := range []atfv1.Outcome{atfv1.Outcome_OUTCOME_SUCCESS, atfv1.Outcome_OUTCOME_FATAL, atfv1.Outcome_OUTCOME_CANCELLED} {
		t.Run(outcome.String(), func(t *testing.T) {
			task := b.running(t, NewTask{})
			st, err := b.store.SetResult(ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: outcome})
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.store.Cancel(ctx, ns, task.ID)
			want := "task " + task.ID + " already finished (" + st.String() + ")"
			if !errors.Is(err, ErrWrongState) || err.Error() != want {
				t.Fatalf("Cancel of a finished task: %v, want %q", err, want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := b.store.Cancel(ctx, ns, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		task := b.schedule(t, NewTask{})
		if _, err := b.store.Cancel(ctx, "team", task.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Cancel from another namespace: %v", err)
		}
	})
}

func TestRetryDeadLetter(t *testing.T) {
	b := setup(t)
	task := b.running(t, NewTask{MaxAttempts: 1, Key: "k"})
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY,
		Error: &atfv1.TaskError{Message: "boom"}}); err != nil {
		t.Fatal(err)
	}
	wantState(t, b.get(t, task.ID), atfv1.TaskState_TASK_STATE_FATAL_FAILURE)
	b.rdb.Del(b.ctx, b.store.QueueKey(ns, "echo", 0))
	b.clock.Advance(time.Minute)

	got, err := b.store.Retry(b.ctx, ns, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, got, atfv1.TaskState_TASK_STATE_ENQUEUED)
	if got.Attempt != 0 || got.CancelRequested || !got.FinishedAt.IsZero() || got.Error.GetMessage() != "boom" || !got.EnqueuedAt.Equal(b.clock.Now()) {
		t.Fatalf("after Retry: %+v", got)
	}
	p, _ := b.store.PartitionOf(task.ID)
	for _, k := range []string{taskKey(p, task.ID), dedupKey(p, ns, "echo", "k")} {
		if ttl := b.rdb.PTTL(b.ctx, k).Val(); ttl != -1 {
			t.Fatalf("%s TTL %s after Retry, want none", k, ttl)
		}
	}
	if q := b.queue(t, 0); !slices.Equal(q, []string{task.ID}) {
		t.Fatalf("queue %v", q)
	}
	b.wantTrigger(t, task.ID, b.clock.Now().Add(enqueueTmo))
	if _, err := b.store.Retry(b.ctx, ns, task.ID); !errors.Is(err, ErrWrongState) {
		t.Fatalf("Retry of an ENQUEUED task: %v", err)
	}
	// It runs again, with a full set of attempts, due from the Retry
	// (not from its execute_at, a minute and more before).
	retried := b.clock.Now()
	b.clock.Advance(time.Second)
	again := b.claim(t, task.ID)
	if again.Attempt != 1 || !again.RequeuedAt.Equal(retried) || !again.DueAt().Equal(retried) || !again.ExecuteAt.Before(retried) {
		t.Fatalf("claimed again: attempt %d, requeued %s, due %s, execute_at %s; want 1, %s, %s, earlier", again.Attempt, again.RequeuedAt, again.DueAt(), again.ExecuteAt, retried, retried)
	}
	if got := b.get(t, task.ID); !got.RequeuedAt.Equal(retried) {
		t.Fatalf("GetTask: requeued %s, want %s", got.RequeuedAt, retried)
	}

	// A cancelled task can be retried too, and its cancel flag is cleared.
	c := b.running(t, NewTask{})
	if _, err := b.store.Cancel(b.ctx, ns, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: c.ID, Token: c.Token, Outcome: atfv1.Outcome_OUTCOME_CANCELLED}); err != nil {
		t.Fatal(err)
	}
	got, err = b.store.Retry(b.ctx, ns, c.ID)
	if err != nil || got.CancelRequested || got.State != atfv1.TaskState_TASK_STATE_ENQUEUED {
		t.Fatalf("Retry of a cancelled task: %+v %v", got, err)
	}
}

// TestSetResultClearsEarlierAttempts: a result writes empty output and
// error fields only when an earlier attempt (or the run before an
// operator's Retry) may have left some, and then always.
func TestSetResultClearsEarlierAttempts(t *testing.T) {
	b := setup(t)
	fail := func(task Task) {
		t.Helper()
		if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY,
			Output: []byte("o1"), OutputTruncated: true, Error: &atfv1.TaskError{Message: "boom"}, RetryAt: b.clock.Now().Add(time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	succeed := func(task Task) Task {
		t.Helper()
		if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
			t.Fatal(err)
		}
		got := b.get(t, task.ID)
		wantState(t, got, atfv1.TaskState_TASK_STATE_SUCCESS)
		if got.Output != nil || got.OutputTruncated || got.Error != nil || !got.UpdatedAt.Equal(got.FinishedAt) {
			t.Fatalf("after a clean success: output %q truncated %v error %v updated %s finished %s", got.Output, got.OutputTruncated, got.Error, got.UpdatedAt, got.FinishedAt)
		}
		return got
	}

	// A first attempt's clean success writes no empty fields at all.
	first := b.running(t, NewTask{})
	succeed(first)
	p, _ := b.store.PartitionOf(first.ID)
	for _, f := range []string{fOutput, fTruncated, fError} {
		if b.rdb.HExists(b.ctx, taskKey(p, first.ID), f).Val() {
			t.Fatalf("field %s written for a first attempt's clean success", f)
		}
	}

	// The second attempt clears the first's output and error.
	second := b.running(t, NewTask{MaxAttempts: 3})
	fail(second)
	b.clock.Advance(time.Second)
	b.processAll(t)
	again := b.claim(t, second.ID)
	if again.Attempt != 2 {
		t.Fatalf("attempt %d", again.Attempt)
	}
	succeed(again)

	// So does the run after an operator's Retry, though it is attempt 1.
	dead := b.running(t, NewTask{MaxAttempts: 1})
	fail(dead)
	wantState(t, b.get(t, dead.ID), atfv1.TaskState_TASK_STATE_FATAL_FAILURE)
	if _, err := b.store.Retry(b.ctx, ns, dead.ID); err != nil {
		t.Fatal(err)
	}
	rerun := b.claim(t, dead.ID)
	if rerun.Attempt != 1 {
		t.Fatalf("attempt %d after Retry", rerun.Attempt)
	}
	succeed(rerun)
}

// TestTasksStoredByEarlierVersions: a task stored by a version that kept
// priority, payload, traceparent and times in fields of their own (no
// "w"), or by one whose work field (version 1) left out the lambda and max
// attempts (fields "lam", "max", and the queue key "q"), still reads,
// claims, is pushed by the consumer to its queue with its traceparent,
// retries within its max attempts, and finishes.
func TestTasksStoredByEarlierVersions(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, format := range []string{"before the work field", "work field version 1", "work field version 2"} {
		t.Run(format, func(t *testing.T) {
			b := setup(t)
			var told []Enqueued
			b.store.opts.OnEnqueue = func(_ context.Context, e []Enqueued) { told = append(told, e...) }
			now := b.clock.Now()
			id := b.store.newID(0, now)
			p, _ := b.store.PartitionOf(id)
			nowMS := ms(now)
			// As that version's prepare wrote it, due now and enqueued,
			// three attempts allowed.
			fields := []any{fNamespace, ns, fState, "2", fEnqueuedAt, nowMS}
			switch format {
			case "before the work field":
				fields = append(fields, fLambda, "echo", fMaxAttempts, "3", fQueue, b.store.QueueKey(ns, "echo", 7),
					fPriority, "7", fExecuteAt, nowMS, fCreatedAt, nowMS, fUpdatedAt, nowMS, fTraceParent, tp, fPayload, "old")
			case "work field version 1":
				fields = append(fields, fLambda, "echo", fMaxAttempts, "3", fQueue, b.store.QueueKey(ns, "echo", 7),
					fWork, workBlobV1(7, now, now, tp, []byte("old")))
			default: // the namespace even when the default one, enqueued-at when enqueued at once
				fields = append(fields, fWork, workBlob("echo", 3, 7, now, now, false, tp, []byte("old")))
			}
			if err := b.rdb.HSet(b.ctx, taskKey(p, id), fields...).Err(); err != nil {
				t.Fatal(err)
			}
			b.rdb.ZAdd(b.ctx, triggerKey(p), redis.Z{Score: float64(now.Add(enqueueTmo).UnixMilli()), Member: id})
			got := b.get(t, id)
			if got.Priority != 7 || string(got.Payload) != "old" || got.TraceParent != tp || !got.ExecuteAt.Equal(now) || !got.CreatedAt.Equal(now) ||
				got.Lambda != "echo" || got.MaxAttempts != 3 || !got.EnqueuedAt.Equal(now) || got.Namespace != ns {
				t.Fatalf("GetTask of an old task: %+v", got)
			}
			// The push was lost: the consumer pushes it again, to its
			// queue, with its traceparent.
			b.clock.Advance(enqueueTmo)
			b.processAll(t)
			if len(told) != 1 || told[0].TaskID != id || told[0].TraceParent != tp || told[0].Lambda != "echo" {
				t.Fatalf("told %+v, want the task with its traceparent", told)
			}
			if q := b.queue(t, 7); !slices.Equal(q, []string{id}) {
				t.Fatalf("queue %v, want the task", q)
			}
			claimed := b.claim(t, id)
			if claimed.Priority != 7 || string(claimed.Payload) != "old" || claimed.TraceParent != tp || !claimed.ExecuteAt.Equal(now) || !claimed.CreatedAt.Equal(now) ||
				claimed.Namespace != ns || claimed.Lambda != "echo" || claimed.MaxAttempts != 3 {
				t.Fatalf("claimed old task: %+v", claimed)
			}
			// A retry reads its max attempts (3: the first attempt is not
			// its last).
			st, err := b.store.SetResult(b.ctx, Result{TaskID: id, Token: claimed.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY, Error: &atfv1.TaskError{Message: "again"}, RetryAt: b.clock.Now().Add(time.Second)})
			if err != nil || st != atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE {
				t.Fatalf("SetResult RETRY: %s %v", st, err)
			}
			b.clock.Advance(time.Second)
			b.processAll(t)
			if q := b.queue(t, 7); !slices.Equal(q, []string{id, id}) {
				t.Fatalf("queue %v, want the task again after its backoff", q)
			}
			claimed = b.claim(t, id)
			if st, err := b.store.SetResult(b.ctx, Result{TaskID: id, Token: claimed.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: []byte("done")}); err != nil || st != atfv1.TaskState_TASK_STATE_SUCCESS {
				t.Fatalf("SetResult: %s %v", st, err)
			}
			if done := b.get(t, id); string(done.Output) != "done" || string(done.Payload) != "old" || done.Attempt != 2 || done.Lambda != "echo" {
				t.Fatalf("finished old task: %+v", done)
			}
		})
	}
	// New tasks keep those in the work field, and one enqueued when created
	// has no enqueued-at field (work version 3), one of the default
	// namespace no namespace field: a task hash of fewer fields.
	b := setup(t)
	fresh := b.schedule(t, NewTask{Priority: 3, Payload: []byte("new"), TraceParent: tp, MaxAttempts: 4})
	fp, _ := b.store.PartitionOf(fresh.ID)
	if fields := b.rdb.HKeys(b.ctx, taskKey(fp, fresh.ID)).Val(); len(fields) != 2 {
		t.Errorf("a new task due now of the default namespace has fields %v, want st and w", fields)
	}
	for _, f := range []string{fLambda, fMaxAttempts, fQueue, fPriority, fPayload, fTraceParent, fExecuteAt, fCreatedAt, fUpdatedAt, fNamespace, fEnqueuedAt} {
		if b.rdb.HExists(b.ctx, taskKey(fp, fresh.ID), f).Val() {
			t.Errorf("a new task has field %s", f)
		}
	}
	if got := b.get(t, fresh.ID); got.Priority != 3 || string(got.Payload) != "new" || got.TraceParent != tp || !got.UpdatedAt.Equal(got.CreatedAt) ||
		got.Lambda != "echo" || got.MaxAttempts != 4 || got.Namespace != DefaultNamespace || !got.EnqueuedAt.Equal(got.CreatedAt) {
		t.Fatalf("new task: %+v", got)
	}
	// One of another namespace has its namespace; one due later is not
	// enqueued until it is.
	other, _, err := b.store.Schedule(b.ctx, NewTask{Namespace: "team-a", Lambda: "echo"})
	if err != nil {
		t.Fatal(err)
	}
	op, _ := b.store.PartitionOf(other.ID)
	if got := b.rdb.HGet(b.ctx, taskKey(op, other.ID), fNamespace).Val(); got != "team-a" {
		t.Errorf("namespace field %q, want team-a", got)
	}
	if _, err := b.store.GetTask(b.ctx, DefaultNamespace, other.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("a task of team-a read from the default namespace: %v", err)
	}
	if _, err := b.store.GetTask(b.ctx, "team-a", fresh.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("a task of the default namespace read from team-a: %v", err)
	}
	if got, err := b.store.GetTask(b.ctx, "team-a", other.ID); err != nil || got.Namespace != "team-a" {
		t.Errorf("GetTask from its namespace: %+v %v", got, err)
	}
	later := b.schedule(t, NewTask{ExecuteAt: b.clock.Now().Add(time.Hour)})
	if got := b.get(t, later.ID); !got.EnqueuedAt.IsZero() {
		t.Errorf("a task due later reads as enqueued at %s", got.EnqueuedAt)
	}
}

// TestRetryBeforeExecuteAt: a task cancelled before its execute_at and
// then retried waits for its execute_at again — a task never starts early
// — rather than being enqueued at once.
func TestRetryBeforeExecuteAt(t *testing.T) {
	b := setup(t)
	at := b.clock.Now().Add(time.Hour)
	task := b.schedule(t, NewTask{ExecuteAt: at, Priority: 2})
	if got, err := b.store.Cancel(b.ctx, ns, task.ID); err != nil || got.State != atfv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("Cancel: %+v %v", got, err)
	}
	b.clock.Advance(time.Minute)
	got, err := b.store.Retry(b.ctx, ns, task.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, got, atfv1.TaskState_TASK_STATE_NEW)
	if !got.EnqueuedAt.IsZero() || !got.FinishedAt.IsZero() || got.Attempt != 0 {
		t.Fatalf("after Retry: %+v", got)
	}
	if q := b.queue(t, 2); len(q) != 0 {
		t.Fatalf("queue %v, want nothing pushed before its time", q)
	}
	b.wantTrigger(t, task.ID, at)
	p, _ := b.store.PartitionOf(task.ID)
	if ttl := b.rdb.PTTL(b.ctx, taskKey(p, task.ID)).Val(); ttl != -1 {
		t.Fatalf("TTL %s after Retry, want none", ttl)
	}
	// At its time the consumer enqueues it; it runs due then.
	b.clock.Advance(at.Sub(b.clock.Now()))
	b.processAll(t)
	if q := b.queue(t, 2); !slices.Equal(q, []string{task.ID}) {
		t.Fatalf("queue %v at its time", q)
	}
	claimed := b.claim(t, task.ID)
	if claimed.Attempt != 1 || !claimed.DueAt().Equal(at) {
		t.Fatalf("claimed: attempt %d due %s, want 1 and %s", claimed.Attempt, claimed.DueAt(), at)
	}

	// One enqueued when created (its execute_at within the dispatch lead:
	// work version 3, no enqueued-at field) and sent back to wait (the lead
	// shortened meanwhile) reads as not enqueued.
	b.store.opts.DispatchLead = time.Second
	soon := b.schedule(t, NewTask{ExecuteAt: b.clock.Now().Add(500 * time.Millisecond)})
	if !soon.EnqueuedAt.Equal(soon.CreatedAt) {
		t.Fatalf("enqueued at %s, created %s", soon.EnqueuedAt, soon.CreatedAt)
	}
	if _, err := b.store.Cancel(b.ctx, ns, soon.ID); err != nil {
		t.Fatal(err)
	}
	b.store.opts.DispatchLead = 0
	got, err = b.store.Retry(b.ctx, ns, soon.ID)
	if err != nil || got.State != atfv1.TaskState_TASK_STATE_NEW || !got.EnqueuedAt.IsZero() {
		t.Fatalf("Retry of a task enqueued when created, before its time: %+v %v", got, err)
	}
}
