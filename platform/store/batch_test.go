package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

func TestScheduleBatch(t *testing.T) {
	b := setup(t)
	old := b.schedule(t, NewTask{Key: "k-old"})
	later := b.clock.Now().Add(time.Minute)
	batch := []NewTask{
		{Namespace: ns, Lambda: "echo", Payload: []byte("a")},
		{Namespace: ns, Lambda: "echo", Payload: []byte("b"), ExecuteAt: later, Collection: "c"},
		{Namespace: ns, Lambda: "echo", Payload: []byte("c"), Key: "k1", Priority: 3},
		{Namespace: ns, Lambda: "echo", Payload: []byte("d"), Key: "k1"},    // same key as [2]
		{Namespace: ns, Lambda: "echo", Payload: []byte("e"), Key: "k-old"}, // key of a stored task
		{Namespace: ns, Lambda: "echo", Payload: []byte("f")},
	}
	res, err := b.store.ScheduleBatch(b.ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(batch) {
		t.Fatalf("%d results, want %d", len(res), len(batch))
	}
	wantDedup := []bool{false, false, false, true, true, false}
	for i, r := range res {
		if r.Deduplicated != wantDedup[i] {
			t.Errorf("results[%d].Deduplicated = %v, want %v", i, r.Deduplicated, wantDedup[i])
		}
	}
	if res[3].Task.ID != res[2].Task.ID {
		t.Errorf("results[3] is %s, want the task of results[2] (%s)", res[3].Task.ID, res[2].Task.ID)
	}
	if res[4].Task.ID != old.ID {
		t.Errorf("results[4] is %s, want the stored task %s", res[4].Task.ID, old.ID)
	}
	wantState(t, b.get(t, res[0].Task.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
	got := b.get(t, res[1].Task.ID)
	wantState(t, got, atfv1.TaskState_TASK_STATE_NEW)
	if got.Collection != "c" || string(got.Payload) != "b" || !got.ExecuteAt.Equal(later) {
		t.Errorf("results[1] stored as %+v", got)
	}
	b.wantTrigger(t, res[1].Task.ID, later)
	if got := b.get(t, res[2].Task.ID); got.Priority != 3 || got.Key != "k1" || string(got.Payload) != "c" {
		t.Errorf("results[2] stored as %+v", got)
	}
	// Due-now tasks are pushed in batch order (the queue pops from the right).
	q0 := b.queue(t, 0)
	slices.Reverse(q0)
	if want := []string{old.ID, res[0].Task.ID, res[5].Task.ID}; !slices.Equal(q0, want) {
		t.Errorf("queue 0 = %v, want %v", q0, want)
	}
	if q3 := b.queue(t, 3); !slices.Equal(q3, []string{res[2].Task.ID}) {
		t.Errorf("queue 3 = %v", q3)
	}
	// The consumer moves the later one when due, as for Schedule.
	b.clock.Advance(time.Minute)
	b.processAll(t)
	wantState(t, b.get(t, res[1].Task.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
}

func TestScheduleBatchAllOrNone(t *testing.T) {
	b := setup(t)
	batch := make([]NewTask, 10)
	for i := range batch {
		batch[i] = NewTask{Namespace: ns, Lambda: "echo", Key: "k" + string(rune('a'+i))}
	}
	batch[7].Priority = 12
	_, err := b.store.ScheduleBatch(b.ctx, batch)
	var be *BatchError
	if !errors.As(err, &be) || be.Index != 7 || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want a BatchError at index 7 wrapping ErrInvalid", err)
	}
	if n := b.rdb.DBSize(b.ctx).Val(); n != 0 {
		keys := b.rdb.Keys(b.ctx, "*").Val()
		t.Fatalf("a refused batch wrote %d keys: %v", n, keys)
	}
	if _, err := b.store.ScheduleBatch(b.ctx, make([]NewTask, MaxBatch+1)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a batch over %d: err = %v, want ErrInvalid", MaxBatch, err)
	}
	if res, err := b.store.ScheduleBatch(b.ctx, nil); err != nil || len(res) != 0 {
		t.Fatalf("empty batch: %v, %v", res, err)
	}
}

func TestScheduleBatchFull(t *testing.T) {
	b := setup(t)
	batch := make([]NewTask, MaxBatch)
	for i := range batch {
		batch[i] = NewTask{Namespace: ns, Lambda: "echo", Payload: make([]byte, 1024)}
	}
	start := time.Now()
	res, err := b.store.ScheduleBatch(b.ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d tasks in %s", len(res), time.Since(start))
	if n := len(b.queue(t, 0)); n != MaxBatch {
		t.Fatalf("queue holds %d, want %d", n, MaxBatch)
	}
	seen := map[string]bool{}
	for _, r := range res {
		seen[r.Task.ID] = true
	}
	if len(seen) != MaxBatch {
		t.Fatalf("%d distinct ids, want %d", len(seen), MaxBatch)
	}
}

func TestListDeadLetters(t *testing.T) {
	b := setup(t)
	dead := b.running(t, NewTask{MaxAttempts: 1})
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: dead.ID, Token: dead.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY,
		Error: &atfv1.TaskError{Kind: atfv1.ErrorKind_ERROR_KIND_EXIT, Message: "exit code 75"}}); err != nil {
		t.Fatal(err)
	}
	fatal := b.running(t, NewTask{MaxAttempts: 3})
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: fatal.ID, Token: fatal.Token, Outcome: atfv1.Outcome_OUTCOME_FATAL,
		Error: &atfv1.TaskError{Kind: atfv1.ErrorKind_ERROR_KIND_EXIT, Message: "exit code 1"}}); err != nil {
		t.Fatal(err)
	}
	b.schedule(t, NewTask{})
	ts, next, err := b.store.ListTasks(b.ctx, ListFilter{Namespace: ns, Lambda: "echo", DeadLetters: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].ID != dead.ID || next != "" {
		t.Fatalf("dead letters = %v (next %q), want only %s", ts, next, dead.ID)
	}
	// Retried, it is no longer a dead letter.
	if _, err := b.store.Retry(b.ctx, ns, dead.ID); err != nil {
		t.Fatal(err)
	}
	ts, _, err = b.store.ListTasks(b.ctx, ListFilter{Namespace: ns, Lambda: "echo", DeadLetters: true})
	if err != nil || len(ts) != 0 {
		t.Fatalf("after retry: %v, %v", ts, err)
	}
}

// TestScheduleBatchRuns: tasks of a batch share run headers only with the
// identical tasks beside them; every task is stored with its own lambda,
// queue, max attempts and index entry, whatever the runs.
func TestScheduleBatchRuns(t *testing.T) {
	b := setup(t)
	var batch []NewTask
	for i := range 12 {
		lam := []string{"echo", "echo", "other"}[i%3]
		batch = append(batch, NewTask{Namespace: ns, Lambda: lam, MaxAttempts: 1 + i/6, Payload: []byte{byte(i)}})
	}
	res, err := b.store.ScheduleBatch(b.ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for i, r := range res {
		got := b.get(t, r.Task.ID)
		nt := batch[i]
		if got.Lambda != nt.Lambda || got.MaxAttempts != nt.MaxAttempts || !slices.Equal(got.Payload, nt.Payload) ||
			got.State != atfv1.TaskState_TASK_STATE_ENQUEUED {
			t.Errorf("task %d stored as %+v, scheduled as %+v", i, got, nt)
		}
		want[nt.Lambda] = append(want[nt.Lambda], r.Task.ID)
	}
	for lam, ids := range want {
		listed, _, err := b.store.ListTasks(b.ctx, ListFilter{Namespace: ns, Lambda: lam, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, task := range listed {
			got = append(got, task.ID)
		}
		slices.Sort(got)
		slices.Sort(ids)
		if !slices.Equal(got, ids) {
			t.Errorf("ListTasks(%s) = %v, want %v", lam, got, ids)
		}
	}
}
