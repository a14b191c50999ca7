package store

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

func TestPopPriorityOrder(t *testing.T) {
	b := setup(t)
	testPop(t, b)
}

func testPop(t *testing.T, b *testBundle) {
	low := b.schedule(t, NewTask{Priority: 0})
	high1 := b.schedule(t, NewTask{Priority: 9})
	mid := b.schedule(t, NewTask{Priority: 5})
	high2 := b.schedule(t, NewTask{Priority: 9})
	queues := []string{b.store.QueueKey(ns, "echo", 9), b.store.QueueKey(ns, "echo", 5), b.store.QueueKey(ns, "echo", 0)}
	lambdas := []PopLambda{{Queues: queues, Running: b.store.RunningKey(ns, "echo")}}

	got, err := b.store.Pop(b.ctx, lambdas, 3, 200*time.Millisecond, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Popped{{queues[0], high1.ID}, {queues[0], high2.ID}, {queues[1], mid.ID}}
	if !slices.Equal(got, want) {
		t.Fatalf("Pop = %v, want %v", got, want)
	}
	got, err = b.store.Pop(b.ctx, lambdas, 10, 0, "")
	if err != nil || !slices.Equal(got, []Popped{{queues[2], low.ID}}) {
		t.Fatalf("non-blocking Pop = %v %v", got, err)
	}

	// Empty: returns an empty slice once the wait is over.
	start := time.Now()
	got, err = b.store.Pop(b.ctx, lambdas, 10, 100*time.Millisecond, "")
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Pop of empty queues = %v %v", got, err)
	}
	if waited := time.Since(start); waited < 80*time.Millisecond {
		t.Fatalf("Pop returned after %s, want it to wait", waited)
	}

	// Blocked, then woken by a push.
	done := make(chan []Popped, 1)
	go func() {
		got, err := b.store.Pop(b.ctx, lambdas, 1, 2*time.Second, "")
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	time.Sleep(50 * time.Millisecond)
	pushed := b.schedule(t, NewTask{Priority: 5})
	select {
	case got := <-done:
		if !slices.Equal(got, []Popped{{queues[1], pushed.ID}}) {
			t.Fatalf("blocked Pop = %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Pop did not return")
	}
}

// TestClaimRace: many controllers claim the same tasks at once; each task
// is claimed exactly once.
func TestClaimRace(t *testing.T) {
	b := setup(t)
	var reqs []ClaimRequest
	for range 20 {
		reqs = append(reqs, ClaimRequest{TaskID: b.schedule(t, NewTask{}).ID, LambdaVersion: 1})
	}
	const claimers = 8
	results := make(chan []Task, claimers)
	for range claimers {
		go func() {
			got, err := b.store.Claim(b.ctx, reqs, claimTmo)
			if err != nil {
				t.Error(err)
			}
			results <- got
		}()
	}
	seen := map[string]int{}
	for range claimers {
		for _, task := range <-results {
			seen[task.ID]++
			if task.Token != 1 || task.Attempt != 1 {
				t.Errorf("task %s claimed with token %d attempt %d", task.ID, task.Token, task.Attempt)
			}
		}
	}
	if len(seen) != len(reqs) {
		t.Fatalf("%d tasks claimed, want %d", len(seen), len(reqs))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("task %s claimed %d times", id, n)
		}
	}
}

// TestClaimLoadsScripts: a server that lost its script cache (restart,
// failover) gets the scripts again on the pipelined paths.
func TestClaimLoadsScripts(t *testing.T) {
	b := setup(t)
	task := b.schedule(t, NewTask{})
	if err := b.rdb.ScriptFlush(b.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	claimed := b.claim(t, task.ID)
	if err := b.rdb.ScriptFlush(b.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	b.beat(t, claimed, atfv1.Directive_DIRECTIVE_CONTINUE)
	if err := b.rdb.ScriptFlush(b.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if st, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: claimed.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil || st != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Fatalf("SetResult after a script flush: %s, %v", st, err)
	}
}

// TestConcurrentSchedules: Schedule calls made at once share script calls;
// each caller gets its own task, a key scheduled by many at once is stored
// once (the others get that task, deduplicated), and every due-now task
// stored is pushed once.
func TestConcurrentSchedules(t *testing.T) {
	b := setup(t)
	const callers = 48
	ids := make([]string, callers)
	keyed := make([]Task, callers)
	dups := make([]bool, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			task, dup, err := b.store.Schedule(b.ctx, NewTask{Namespace: ns, Lambda: "echo", Payload: []byte{byte(i)}})
			if err != nil || dup {
				t.Errorf("Schedule %d: %v, deduplicated %v", i, err, dup)
				return
			}
			ids[i] = task.ID
			if keyed[i], dups[i], err = b.store.Schedule(b.ctx, NewTask{Namespace: ns, Lambda: "echo", Key: "k"}); err != nil {
				t.Errorf("Schedule %d with a key: %v", i, err)
			}
		})
	}
	wg.Wait()
	stored := 0
	for i := range callers {
		if got := b.get(t, ids[i]); len(got.Payload) != 1 || got.Payload[0] != byte(i) {
			t.Fatalf("task of caller %d stored as %+v", i, got)
		}
		if keyed[i].ID != keyed[0].ID {
			t.Fatalf("key k scheduled as %s and %s", keyed[i].ID, keyed[0].ID)
		}
		if !dups[i] {
			stored++
		}
	}
	if stored != 1 {
		t.Fatalf("key k stored by %d callers, want 1", stored)
	}
	queued := b.queue(t, 0)
	slices.Sort(queued)
	want := append(slices.Clone(ids), keyed[0].ID)
	slices.Sort(want)
	if !slices.Equal(queued, want) {
		t.Fatalf("queue holds %d entries %v, want each of the %d tasks once", len(queued), queued, len(want))
	}
}

// TestClaimAndResultsInBatches: a claim of many tasks over every partition
// is one script call per partition group, and so are concurrent results;
// each task still gets its own answer, in the order asked, and a stale
// token in a batch changes nothing of its task while the others record.
func TestClaimAndResultsInBatches(t *testing.T) {
	b := setup(t)
	const n = 40
	var reqs []ClaimRequest
	parts := map[int]bool{}
	version := func(i int) int64 { return 3 + int64(i/7%2) } // runs of one version in the call
	for i := range n {
		task := b.schedule(t, NewTask{})
		reqs = append(reqs, ClaimRequest{TaskID: task.ID, LambdaVersion: version(i)})
		p, _ := b.store.PartitionOf(task.ID)
		parts[p] = true
	}
	if len(parts) < 2 {
		t.Fatalf("all %d tasks in one partition", n)
	}
	// A duplicate entry and a missing task among them are skipped.
	asked := slices.Concat(reqs[:10], []ClaimRequest{reqs[3], {TaskID: reqs[0].TaskID[:2] + "01hzy3xq8k2m4n6p8r0t2v4w6y"}}, reqs[10:])
	claimed, err := b.store.Claim(b.ctx, asked, claimTmo)
	if err != nil || len(claimed) != n {
		t.Fatalf("Claim: %d tasks, %v", len(claimed), err)
	}
	for i, task := range claimed {
		if task.ID != reqs[i].TaskID || task.Token != 1 || task.LambdaVersion != version(i) {
			t.Fatalf("claimed[%d] = %s token %d version %d, want %s token 1 version %d", i, task.ID, task.Token, task.LambdaVersion, reqs[i].TaskID, version(i))
		}
		if got := b.get(t, task.ID); got.LambdaVersion != version(i) {
			t.Fatalf("task %d stored version %d, want %d", i, got.LambdaVersion, version(i))
		}
	}

	// One batch: even tasks succeed, odd ones come with a stale token.
	ops := make([]*resultOp, n)
	for i, task := range claimed {
		r := Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: []byte(task.ID)}
		if i%2 == 1 {
			r.Token = 7
		}
		p, _ := b.store.PartitionOf(task.ID)
		ops[i] = &resultOp{r: &r, p: p}
	}
	b.store.setResults(b.ctx, ops)
	for i, op := range ops {
		want := int64(atfv1.TaskState_TASK_STATE_SUCCESS)
		if i%2 == 1 {
			want = -1 - int64(atfv1.TaskState_TASK_STATE_CLAIMED)
		}
		if op.err != nil || op.state != want {
			t.Fatalf("result %d: state %d, %v; want %d", i, op.state, op.err, want)
		}
		got := b.get(t, claimed[i].ID)
		if i%2 == 0 && (got.State != atfv1.TaskState_TASK_STATE_SUCCESS || string(got.Output) != got.ID) ||
			i%2 == 1 && (got.State != atfv1.TaskState_TASK_STATE_CLAIMED || got.Output != nil) {
			t.Fatalf("task %d after the batch: %s, output %q", i, got.State, got.Output)
		}
	}

	// The same through SetResult, concurrently: each caller reads its own
	// answer (a retry, a stale token, a result for a task that ended).
	var wg sync.WaitGroup
	for i, task := range claimed {
		wg.Go(func() {
			r := Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY, RetryAt: b.clock.Now().Add(time.Minute), Duration: 2500 * time.Microsecond}
			st, err := b.store.SetResult(b.ctx, r)
			switch {
			case i%2 == 0 && !errors.Is(err, ErrClaimLost):
				t.Errorf("result for finished task %d: %s, %v", i, st, err)
			case i%2 == 1 && (err != nil || st != atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE):
				t.Errorf("retry of task %d: %s, %v", i, st, err)
			}
		})
	}
	wg.Wait()
	for i, task := range claimed {
		if i%2 == 1 {
			b.wantTrigger(t, task.ID, b.clock.Now().Add(time.Minute))
			// Never heartbeaten: its start is stored, its duration (rounded
			// up to the millisecond) before the result.
			if got := b.get(t, task.ID); !got.StartedAt.Equal(b.clock.Now().Add(-2 * time.Millisecond)) {
				t.Errorf("retried task %d started at %v, want %v", i, got.StartedAt, b.clock.Now().Add(-2*time.Millisecond))
			}
		}
	}
}

// TestSetResults: results recorded together are each judged as SetResult
// would judge them, and answered in order.
func TestSetResults(t *testing.T) {
	b := setup(t)
	var claimed []Task
	for range 3 {
		claimed = append(claimed, b.running(t, NewTask{MaxAttempts: 3}))
	}
	answers := b.store.SetResults(b.ctx, []Result{
		{TaskID: claimed[0].ID, Token: claimed[0].Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: []byte("ok")},
		{TaskID: claimed[1].ID, Token: claimed[1].Token + 1, Outcome: atfv1.Outcome_OUTCOME_SUCCESS},
		{TaskID: claimed[1].ID, Token: claimed[1].Token, Outcome: 99},
		{TaskID: claimed[2].ID, Token: claimed[2].Token, Outcome: atfv1.Outcome_OUTCOME_RETRY, RetryAt: b.clock.Now().Add(time.Minute)},
		{TaskID: "bad", Outcome: atfv1.Outcome_OUTCOME_SUCCESS},
	})
	if len(answers) != 5 {
		t.Fatalf("%d answers for 5 results", len(answers))
	}
	if answers[0].State != atfv1.TaskState_TASK_STATE_SUCCESS || answers[0].Err != nil {
		t.Errorf("a current claim's success: %+v", answers[0])
	}
	if !errors.Is(answers[1].Err, ErrClaimLost) {
		t.Errorf("a stale token: %+v, want ErrClaimLost", answers[1])
	}
	if !errors.Is(answers[2].Err, ErrInvalid) {
		t.Errorf("an unknown outcome: %+v, want ErrInvalid", answers[2])
	}
	if answers[3].State != atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE || answers[3].Err != nil {
		t.Errorf("a retry within max attempts: %+v", answers[3])
	}
	if !errors.Is(answers[4].Err, ErrInvalid) && !errors.Is(answers[4].Err, ErrNotFound) {
		t.Errorf("a malformed id: %+v", answers[4])
	}
	if got := b.get(t, claimed[0].ID); string(got.Output) != "ok" || got.State != atfv1.TaskState_TASK_STATE_SUCCESS {
		t.Errorf("stored: %+v", got)
	}
	if got := b.get(t, claimed[1].ID); got.State != atfv1.TaskState_TASK_STATE_PROCESSING {
		t.Errorf("the stale and the invalid result changed the task: %s", got.State)
	}
	wantState(t, b.get(t, claimed[2].ID), atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE)
}
