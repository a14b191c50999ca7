package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

func (b *testBundle) deployEcho(t *testing.T) {
	t.Helper()
	if _, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: ns, Name: "echo", SHA256: "00"}); err != nil {
		t.Fatal(err)
	}
}

// claimAll claims ids as a controller would after popping them, and
// returns the ids it got.
func (b *testBundle) claimAll(t *testing.T, ids ...string) []string {
	t.Helper()
	var reqs []ClaimRequest
	for _, id := range ids {
		reqs = append(reqs, ClaimRequest{TaskID: id, LambdaVersion: 1})
	}
	got, err := b.store.Claim(b.ctx, reqs, claimTmo)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range got {
		out = append(out, task.ID)
	}
	return out
}

func (b *testBundle) wantParked(t *testing.T, id string, parked bool) {
	t.Helper()
	task := b.get(t, id)
	if parked {
		if task.State != atfv1.TaskState_TASK_STATE_NEW || !task.Parked || task.Attempt != 0 {
			t.Fatalf("task %s: %s parked=%v attempt %d, want NEW parked with no attempt spent", id, task.State, task.Parked, task.Attempt)
		}
		b.wantNoTrigger(t, id)
		return
	}
	if task.Parked {
		t.Fatalf("task %s is parked", id)
	}
}

func TestPauseResumeLambda(t *testing.T) {
	b := setup(t)
	b.deployEcho(t)
	if err := b.store.Pause(b.ctx, ns, "nope", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pause of an unknown lambda: %v", err)
	}
	if err := b.store.Pause(b.ctx, ns, "echo", ""); err != nil {
		t.Fatal(err)
	}
	if g, _ := b.store.Gate(b.ctx, ns, "echo"); !g.Paused {
		t.Fatalf("gate = %+v, want paused", g)
	}
	var ids []string
	for range 5 {
		ids = append(ids, b.schedule(t, NewTask{}).ID)
	}
	other := b.schedule(t, NewTask{Lambda: "other"})
	if got := b.claimAll(t, append(ids, other.ID)...); !slices.Equal(got, []string{other.ID}) {
		t.Fatalf("claimed %v while echo is paused, want only %s", got, other.ID)
	}
	for _, id := range ids {
		b.wantParked(t, id, true)
	}
	// Parked tasks cost nothing: no trigger brings them back.
	b.clock.Advance(time.Hour)
	if n := b.processAll(t); n != 1 { // the other lambda's claim timeout
		t.Fatalf("ProcessDue moved %d, want 1", n)
	}
	b.rdb.Del(b.ctx, b.store.QueueKey(ns, "echo", 0))

	n, err := b.store.Resume(b.ctx, ns, "echo", "")
	if err != nil || n != 5 {
		t.Fatalf("Resume = %d, %v; want 5", n, err)
	}
	if g, _ := b.store.Gate(b.ctx, ns, "echo"); g.Paused {
		t.Fatalf("gate = %+v after resume", g)
	}
	q := b.queue(t, 0)
	slices.Sort(q)
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(q, want) {
		t.Fatalf("queue after resume = %v, want %v", q, want)
	}
	for _, id := range ids {
		b.wantParked(t, id, false)
		wantState(t, b.get(t, id), atfv1.TaskState_TASK_STATE_ENQUEUED)
		b.wantTrigger(t, id, b.clock.Now().Add(enqueueTmo))
	}
	if got := b.claimAll(t, ids...); len(got) != 5 {
		t.Fatalf("claimed %v after resume", got)
	}
	if got := b.get(t, ids[0]); got.Attempt != 1 {
		t.Fatalf("attempt %d after the first claim, want 1", got.Attempt)
	}
}

func TestPauseCollection(t *testing.T) {
	b := setup(t)
	b.deployEcho(t)
	if err := b.store.Pause(b.ctx, ns, "echo", "c1"); err != nil {
		t.Fatal(err)
	}
	c1 := b.schedule(t, NewTask{Collection: "c1"})
	c2 := b.schedule(t, NewTask{Collection: "c2"})
	none := b.schedule(t, NewTask{})
	if got := b.claimAll(t, c1.ID, c2.ID, none.ID); !slices.Equal(got, []string{c2.ID, none.ID}) {
		t.Fatalf("claimed %v, want c2 and the one without collection", got)
	}
	b.wantParked(t, c1.ID, true)

	// The lambda paused as well: resuming c1 keeps its task parked.
	if err := b.store.Pause(b.ctx, ns, "echo", ""); err != nil {
		t.Fatal(err)
	}
	if g, _ := b.store.Gate(b.ctx, ns, "echo"); !g.Paused || !slices.Equal(g.Collections, []string{"c1"}) {
		t.Fatalf("gate = %+v", g)
	}
	if n, err := b.store.Resume(b.ctx, ns, "echo", "c1"); err != nil || n != 0 {
		t.Fatalf("Resume(c1) = %d, %v; want 0 while the lambda is paused", n, err)
	}
	b.wantParked(t, c1.ID, true)
	if n, err := b.store.Resume(b.ctx, ns, "echo", ""); err != nil || n != 1 {
		t.Fatalf("Resume = %d, %v; want 1", n, err)
	}
	if got := b.claimAll(t, c1.ID); len(got) != 1 {
		t.Fatalf("c1 task not claimable after resume")
	}
	// Resuming the lambda leaves a paused collection paused.
	if err := b.store.Pause(b.ctx, ns, "echo", "c2"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Pause(b.ctx, ns, "echo", ""); err != nil {
		t.Fatal(err)
	}
	late := b.schedule(t, NewTask{Collection: "c2"})
	b.claimAll(t, late.ID)
	b.wantParked(t, late.ID, true)
	if n, _ := b.store.Resume(b.ctx, ns, "echo", ""); n != 0 {
		t.Fatalf("resuming the lambda enqueued %d tasks of the paused c2", n)
	}
	if g, _ := b.store.Gate(b.ctx, ns, "echo"); g.Paused || !slices.Equal(g.Collections, []string{"c2"}) {
		t.Fatalf("gate = %+v", g)
	}
}

func TestDrop(t *testing.T) {
	b := setup(t)
	b.deployEcho(t)
	newLater := b.schedule(t, NewTask{ExecuteAt: b.clock.Now().Add(time.Hour), Collection: "c"})
	enqueued := b.schedule(t, NewTask{Collection: "c"})
	parked := b.schedule(t, NewTask{Collection: "c"})
	running := b.running(t, NewTask{Collection: "c"})
	retriable := b.running(t, NewTask{Collection: "c"})
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: retriable.ID, Token: retriable.Token, Outcome: atfv1.Outcome_OUTCOME_RETRY, RetryAt: b.clock.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	done := b.running(t, NewTask{Collection: "c"})
	if _, err := b.store.SetResult(b.ctx, Result{TaskID: done.ID, Token: done.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
		t.Fatal(err)
	}
	otherCol := b.schedule(t, NewTask{Collection: "d"})
	if err := b.store.Pause(b.ctx, ns, "echo", "c"); err != nil {
		t.Fatal(err)
	}
	b.claimAll(t, parked.ID)
	b.wantParked(t, parked.ID, true)

	n, err := b.store.Drop(b.ctx, ns, "echo", "c")
	if err != nil || n != 4 {
		t.Fatalf("Drop(c) = %d, %v; want 4", n, err)
	}
	for _, id := range []string{newLater.ID, enqueued.ID, parked.ID, retriable.ID} {
		task := b.get(t, id)
		wantState(t, task, atfv1.TaskState_TASK_STATE_CANCELLED)
		if task.Parked || task.FinishedAt.IsZero() {
			t.Fatalf("dropped task %s: %+v", id, task)
		}
		b.wantNoTrigger(t, id)
	}
	wantState(t, b.get(t, running.ID), atfv1.TaskState_TASK_STATE_PROCESSING)
	wantState(t, b.get(t, done.ID), atfv1.TaskState_TASK_STATE_SUCCESS)
	wantState(t, b.get(t, otherCol.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
	if c := b.rdb.ZCard(b.ctx, parkedKey(mustPart(t, b, parked.ID), ns, "echo")).Val(); c != 0 {
		t.Fatalf("parked set holds %d after drop", c)
	}
	if n, err := b.store.Drop(b.ctx, ns, "echo", ""); err != nil || n != 1 {
		t.Fatalf("Drop = %d, %v; want 1 (the task of d)", n, err)
	}
	// A dropped task is not resumed.
	if n, _ := b.store.Resume(b.ctx, ns, "echo", "c"); n != 0 {
		t.Fatalf("Resume enqueued %d dropped tasks", n)
	}
}

func mustPart(t *testing.T, b *testBundle, id string) int {
	t.Helper()
	p, err := b.store.PartitionOf(id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPausedBacklogCostsNothing parks a backlog and checks that nothing is
// left that would make Redis or the consumer look at it again.
func TestPausedBacklogCostsNothing(t *testing.T) {
	b := setup(t)
	b.deployEcho(t)
	if err := b.store.Pause(b.ctx, ns, "echo", ""); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	batch := make([]NewTask, n)
	for i := range batch {
		batch[i] = NewTask{Namespace: ns, Lambda: "echo"}
	}
	for i := 0; i < n; i += MaxBatch {
		if _, err := b.store.ScheduleBatch(b.ctx, batch[i:i+MaxBatch]); err != nil {
			t.Fatal(err)
		}
	}
	// Pop them all, as a controller would, and try to claim them.
	ids := b.queue(t, 0)
	b.rdb.Del(b.ctx, b.store.QueueKey(ns, "echo", 0))
	for i := 0; i < len(ids); i += 500 {
		if got := b.claimAll(t, ids[i:min(i+500, len(ids))]...); len(got) != 0 {
			t.Fatalf("claimed %d paused tasks", len(got))
		}
	}
	parked := 0
	for p := range b.store.Partitions() {
		if c := b.rdb.ZCard(b.ctx, triggerKey(p)).Val(); c != 0 {
			t.Fatalf("partition %d has %d triggers with the whole backlog parked", p, c)
		}
		parked += int(b.rdb.ZCard(b.ctx, parkedKey(p, ns, "echo")).Val())
	}
	if parked != n {
		t.Fatalf("%d parked, want %d", parked, n)
	}
	b.clock.Advance(24 * time.Hour)
	if moved := b.processAll(t); moved != 0 {
		t.Fatalf("ProcessDue moved %d parked tasks", moved)
	}
	got, err := b.store.Resume(b.ctx, ns, "echo", "")
	if err != nil || got != n {
		t.Fatalf("Resume = %d, %v; want %d", got, err, n)
	}
	if q := len(b.queue(t, 0)); q != n {
		t.Fatalf("queue holds %d after resume, want %d", q, n)
	}
}
