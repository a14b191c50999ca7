package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	tps := map[string]string{}
	for i := range 5 {
		tp := fmt.Sprintf("00-4bf92f3577b34a0e9ff1e7ad0e0d3c9%d-00f067aa0ba902b7-01", i)
		id := b.schedule(t, NewTask{TraceParent: tp}).ID
		ids = append(ids, id)
		tps[id] = tp
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

	// ResumeFunc tells what it enqueued, with each task's traceparent.
	told := map[string]string{}
	n, err := b.store.ResumeFunc(b.ctx, ns, "echo", "", func(_ context.Context, tasks []Enqueued) {
		for _, e := range tasks {
			if e.Lambda != "echo" || e.From != atfv1.TaskState_TASK_STATE_NEW {
				t.Errorf("told %+v", e)
			}
			told[e.TaskID] = e.TraceParent
		}
	})
	if err != nil || n != 5 {
		t.Fatalf("Resume = %d, %v; want 5", n, err)
	}
	if !maps.Equal(told, tps) {
		t.Fatalf("ResumeFunc told %v, want %v", told, tps)
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
		got := b.get(t, id)
		wantState(t, got, atfv1.TaskState_TASK_STATE_ENQUEUED)
		b.wantTrigger(t, id, b.clock.Now().Add(enqueueTmo))
		// Due from the resume: the hour paused is not the platform's delay.
		if !got.RequeuedAt.Equal(b.clock.Now()) || !got.DueAt().Equal(b.clock.Now()) {
			t.Fatalf("requeued %s, due %s; want the resume, %s", got.RequeuedAt, got.DueAt(), b.clock.Now())
		}
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

// TestDrop drops a collection, then the lambda, once where the lambda's
// index is the smaller set to read and once where the live tasks are.
func TestDrop(t *testing.T) {
	for _, c := range []struct {
		name        string
		setup       func(*testing.T) *testBundle
		viaTriggers bool
	}{
		{"index", setup, false},
		{"triggers", setup, true},
		{"index-miniredis", setupMiniredis, false},
		{"triggers-miniredis", setupMiniredis, true},
	} {
		t.Run(c.name, func(t *testing.T) { testDrop(t, c.setup(t), c.viaTriggers) })
	}
}

func testDrop(t *testing.T, b *testBundle, viaTriggers bool) {
	b.deployEcho(t)
	if viaTriggers {
		// Many finished tasks of the lambda: its index outgrows the live
		// tasks of every partition.
		for _, r := range b.scheduleMany(t, 400, NewTask{Collection: "c"}) {
			if _, err := b.store.Cancel(b.ctx, ns, r.ID); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		// Many live tasks of another lambda: every partition's trigger set
		// outgrows the lambda's index.
		b.scheduleMany(t, 400, NewTask{Lambda: "other"})
	}
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
	otherLambda := b.schedule(t, NewTask{Lambda: "other", Collection: "c"})
	if err := b.store.Pause(b.ctx, ns, "echo", "c"); err != nil {
		t.Fatal(err)
	}
	b.claimAll(t, parked.ID)
	b.wantParked(t, parked.ID, true)

	cost := b.dropCost(t, "echo", viaTriggers)
	st, err := b.store.drop(b.ctx, ns, "echo", "c")
	if err != nil || st.cancelled != 4 {
		t.Fatalf("Drop(c) = %+v, %v; want 4 cancelled", st, err)
	}
	if st.looked != cost {
		t.Fatalf("Drop(c) looked at %d entries, want %d", st.looked, cost)
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
	wantState(t, b.get(t, otherLambda.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
	if c := b.rdb.ZCard(b.ctx, parkedKey(mustPart(t, b, parked.ID), ns, "echo")).Val(); c != 0 {
		t.Fatalf("parked set holds %d after drop", c)
	}
	if n, err := b.store.Drop(b.ctx, ns, "echo", ""); err != nil || n != 1 {
		t.Fatalf("Drop = %d, %v; want 1 (the task of d)", n, err)
	}
	wantState(t, b.get(t, otherLambda.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
	wantState(t, b.get(t, running.ID), atfv1.TaskState_TASK_STATE_PROCESSING)
	// A dropped task is not resumed.
	if n, _ := b.store.Resume(b.ctx, ns, "echo", "c"); n != 0 {
		t.Fatalf("Resume enqueued %d dropped tasks", n)
	}
}

// scheduleMany schedules n tasks like nt (of echo unless it names a
// lambda) in batches.
func (b *testBundle) scheduleMany(t *testing.T, n int, nt NewTask) []Task {
	t.Helper()
	nt.Namespace = ns
	if nt.Lambda == "" {
		nt.Lambda = "echo"
	}
	var out []Task
	for n > 0 {
		batch := make([]NewTask, min(n, MaxBatch))
		for i := range batch {
			batch[i] = nt
		}
		res, err := b.store.ScheduleBatch(b.ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			out = append(out, r.Task)
		}
		n -= len(batch)
	}
	return out
}

// dropCost is how many set entries a drop of lambda should read: in each
// partition, its index or, when smaller, the trigger and parked sets. It
// fails the test unless every partition takes the path viaTriggers says.
func (b *testBundle) dropCost(t *testing.T, lambda string, viaTriggers bool) int {
	t.Helper()
	cost := 0
	for p := range b.store.Partitions() {
		idx := int(b.rdb.ZCard(b.ctx, indexKey(p, ns, lambda)).Val())
		live := int(b.rdb.ZCard(b.ctx, triggerKey(p)).Val() + b.rdb.ZCard(b.ctx, parkedKey(p, ns, lambda)).Val())
		if (live < idx) != viaTriggers {
			t.Fatalf("partition %d: index %d, trigger and parked sets %d: not the path the test means", p, idx, live)
		}
		cost += min(idx, live)
	}
	return cost
}

// TestDropChunks drops more waiting tasks than one chunk from each
// partition's trigger and parked sets, among tasks of another lambda that
// stay: none is skipped as the sets shrink under the scan.
func TestDropChunks(t *testing.T) {
	b := setup(t)
	b.deployEcho(t)
	for _, r := range b.scheduleMany(t, 1000, NewTask{}) {
		if _, err := b.store.Cancel(b.ctx, ns, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.store.Pause(b.ctx, ns, "echo", "p"); err != nil {
		t.Fatal(err)
	}
	var parked []string
	for _, r := range b.scheduleMany(t, 2400, NewTask{Collection: "p"}) {
		parked = append(parked, r.ID)
	}
	for i := 0; i < len(parked); i += 500 {
		b.claimAll(t, parked[i:min(i+500, len(parked))]...)
	}
	b.rdb.Del(b.ctx, b.store.QueueKey(ns, "echo", 0))
	// Tasks of both lambdas, interleaved in the trigger sets (same
	// trigger, ids in scheduling order), and NEW ones later.
	var waiting, others []Task
	for range 3 {
		batch := make([]NewTask, MaxBatch)
		for i := range batch {
			batch[i] = NewTask{Namespace: ns, Lambda: "echo"}
			if i%7 == 3 {
				batch[i].Lambda = "other"
			}
		}
		res, err := b.store.ScheduleBatch(b.ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Task.Lambda == "echo" {
				waiting = append(waiting, r.Task)
			} else {
				others = append(others, r.Task)
			}
		}
	}
	waiting = append(waiting, b.scheduleMany(t, 400, NewTask{ExecuteAt: b.clock.Now().Add(time.Hour)})...)
	for p := range b.store.Partitions() {
		trig := b.rdb.ZCard(b.ctx, triggerKey(p)).Val()
		park := b.rdb.ZCard(b.ctx, parkedKey(p, ns, "echo")).Val()
		if trig <= gateChunk || park <= gateChunk {
			t.Fatalf("partition %d: %d triggers, %d parked: not more than a chunk", p, trig, park)
		}
	}

	cost := b.dropCost(t, "echo", true)
	st, err := b.store.drop(b.ctx, ns, "echo", "")
	if want := len(parked) + len(waiting); err != nil || st.cancelled != want {
		t.Fatalf("drop = %+v, %v; want %d cancelled", st, err, want)
	}
	if st.looked != cost {
		t.Fatalf("drop looked at %d entries, want %d", st.looked, cost)
	}
	for p := range b.store.Partitions() {
		if c := b.rdb.ZCard(b.ctx, parkedKey(p, ns, "echo")).Val(); c != 0 {
			t.Fatalf("partition %d: %d parked after the drop", p, c)
		}
	}
	left := 0
	for p := range b.store.Partitions() {
		left += int(b.rdb.ZCard(b.ctx, triggerKey(p)).Val())
	}
	if left != len(others) {
		t.Fatalf("%d triggers left, want the %d tasks of the other lambda", left, len(others))
	}
	for _, o := range others {
		wantState(t, b.get(t, o.ID), atfv1.TaskState_TASK_STATE_ENQUEUED)
	}
}

// TestDropAnchor runs dropScript by hand with an anchor that kept its
// score (the chunk goes on after it) and one that moved (the chunk goes
// back to the anchor's old score: nothing is skipped).
func TestDropAnchor(t *testing.T) {
	b := setup(t)
	b.deployEcho(t)
	// Tasks due now, ENQUEUED with the same trigger: ordered by id.
	tasks := b.scheduleMany(t, 40, NewTask{})
	p := mustPart(t, b, tasks[0].ID)
	trig := triggerKey(p)
	entries := b.rdb.ZRange(b.ctx, trig, 0, -1).Val()
	if len(entries) < 3 {
		t.Fatalf("partition %d holds %d tasks", p, len(entries))
	}
	score := b.rdb.ZScore(b.ctx, trig, entries[1]).Val()
	run := func(anchor string, anchorScore float64) int64 {
		t.Helper()
		res, err := dropScript.Run(b.ctx, b.rdb,
			[]string{trig, trig, parkedKey(p, ns, "echo")},
			ns, "echo", "", ms(b.clock.Now()), partPrefix(p),
			anchor, strconv.FormatFloat(anchorScore, 'f', -1, 64), gateChunk).Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res[0].(int64)
	}
	// Going on after the second entry: all but the first two.
	if n := run(entries[1], score); n != int64(len(entries)-2) {
		t.Fatalf("after an anchor in place: %d cancelled, want %d", n, len(entries)-2)
	}
	if left := b.rdb.ZRange(b.ctx, trig, 0, -1).Val(); !slices.Equal(left, entries[:2]) {
		t.Fatalf("left %v, want %v", left, entries[:2])
	}
	// The anchor moved since it was read (a new trigger): going on after
	// its new rank would skip the first entry.
	b.rdb.ZAdd(b.ctx, trig, redis.Z{Score: score + 1000, Member: entries[1]})
	if n := run(entries[1], score); n != 2 {
		t.Fatalf("after an anchor that moved: %d cancelled, want 2", n)
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

// TestResumeWhileDropped: a Drop removing parked tasks between two chunks
// of a Resume makes it skip none of the tasks it must enqueue (a rank
// cursor would: a task skipped stays parked with no gate left to lift).
func TestResumeWhileDropped(t *testing.T) {
	b := setup(t)
	b.deployEcho(t)
	for _, col := range []string{"", "c"} {
		if err := b.store.Pause(b.ctx, ns, "echo", col); err != nil {
			t.Fatal(err)
		}
	}
	// Parked in this order (same millisecond: by id): collection c first.
	held := b.scheduleMany(t, 40, NewTask{Collection: "c"})
	free := b.scheduleMany(t, 40, NewTask{})
	var ids []string
	for _, task := range append(slices.Clone(held), free...) {
		ids = append(ids, task.ID)
	}
	if got := b.claimAll(t, ids...); len(got) != 0 {
		t.Fatalf("claimed %d paused tasks", len(got))
	}
	p := mustPart(t, b, held[0].ID)
	parked := parkedKey(p, ns, "echo")
	chunk := func(anchor, score string) (looked int64, nextAnchor, nextScore string) {
		t.Helper()
		res, err := resumeScript.Run(b.ctx, b.rdb, []string{partGateKey(p), parked, triggerKey(p)},
			gateField(ns, "echo", ""), ms(b.clock.Now()), ms(b.clock.Now().Add(enqueueTmo)), partPrefix(p),
			anchor, score, 4, gateField(ns, "echo", "")).Slice()
		if err != nil {
			t.Fatal(err)
		}
		nextAnchor, _ = res[1].(string)
		nextScore, _ = res[2].(string)
		return res[0].(int64), nextAnchor, nextScore
	}
	// Lifting the lambda's pause: the first chunk keeps collection c's.
	_, anchor, score := chunk("", "")
	if anchor == "" {
		t.Fatal("the first chunk kept nothing; the test needs kept tasks first")
	}
	// Meanwhile collection c is dropped: its parked entries go.
	if n, err := b.store.Drop(b.ctx, ns, "echo", "c"); err != nil || n != len(held) {
		t.Fatalf("Drop(c) = %d, %v; want %d", n, err, len(held))
	}
	for looked := int64(4); looked == 4; {
		looked, anchor, score = chunk(anchor, score)
	}
	if left := b.rdb.ZCard(b.ctx, parked).Val(); left != 0 {
		t.Fatalf("%d tasks left parked in partition %d", left, p)
	}
	for _, task := range free {
		if mustPart(t, b, task.ID) != p {
			continue
		}
		if got := b.get(t, task.ID); got.State != atfv1.TaskState_TASK_STATE_ENQUEUED || got.Parked {
			t.Fatalf("task %s after the resume: %v parked %v", task.ID, got.State, got.Parked)
		}
	}
}
