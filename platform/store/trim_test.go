package store

import (
	"fmt"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// TestTrimIndex: tasks that finished more than the retention ago are
// deleted with their key mappings, and their index entries dropped, as are
// the entries of tasks gone (an earlier version's TTL); tasks kept, however
// old — live, or finished lately — stay with their entries; a chunked walk
// with its cursor misses none.
func TestTrimIndex(t *testing.T) { testTrimIndex(t, setup(t)) }

// TestTrimIndexMiniredis: the same on miniredis, which `atf dev` may run on.
func TestTrimIndexMiniredis(t *testing.T) { testTrimIndex(t, setupMiniredis(t)) }

func testTrimIndex(t *testing.T, b *testBundle) {
	b.deployEcho(t)
	succeed := func(task Task) {
		t.Helper()
		if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
			t.Fatal(err)
		}
	}
	// Old tasks, all created more than the retention before the trim:
	// finished then (half with keys: their mappings go too), gone already
	// (deleted by hand, as an earlier version's TTL would), finished only
	// lately, and live ones.
	var deleted, gone, late, kept []Task
	for i := range 30 {
		nt := NewTask{}
		if i%2 == 0 {
			nt.Key = fmt.Sprintf("k%d", i)
		}
		task := b.running(t, nt)
		switch i % 3 {
		case 0:
			late = append(late, task)
		case 1:
			succeed(task)
			deleted = append(deleted, task)
		default:
			succeed(task)
			p := mustPart(t, b, task.ID)
			b.rdb.Del(b.ctx, taskKey(p, task.ID), dedupKey(p, ns, "echo", nt.Key))
			gone = append(gone, task)
		}
		kept = append(kept, b.schedule(t, NewTask{ExecuteAt: b.clock.Now().Add(30 * 24 * time.Hour)}))
	}
	b.clock.Advance(time.Hour + time.Minute) // past the retention
	for _, task := range late {
		succeed(task) // kept for the retention from now
	}
	kept = append(kept, late...)
	// Recent: gone early (deleted by hand) but created after the cutoff,
	// so not looked at.
	recent := b.running(t, NewTask{})
	b.rdb.Del(b.ctx, taskKey(mustPart(t, b, recent.ID), recent.ID))

	l := LambdaRef{Namespace: ns, Name: "echo"}
	if got, err := b.store.IndexedLambdas(b.ctx); err != nil || len(got) != 1 || got[0] != l {
		t.Fatalf("IndexedLambdas = %v, %v; want [%v]", got, err, l)
	}
	// A second lambda with nothing to trim rides along in the same script.
	other := LambdaRef{Namespace: ns, Name: "other"}
	removed := 0
	for p := range b.store.Partitions() {
		curs := make([]TrimCursor, 2)
		for calls := 0; ; calls++ {
			n, next, done, err := b.store.TrimIndexes(b.ctx, p, []LambdaRef{l, other}, curs, 2) // small chunks: the cursor at work
			if err != nil {
				t.Fatal(err)
			}
			removed += n
			curs = next
			if !done[1] {
				t.Fatalf("partition %d: an empty index set not done", p)
			}
			if done[0] {
				break
			}
			if calls > 100 {
				t.Fatalf("partition %d: no end after %d chunks", p, calls)
			}
		}
	}
	if removed != len(deleted)+len(gone) {
		t.Fatalf("dropped %d entries, want %d", removed, len(deleted)+len(gone))
	}
	for _, task := range append(kept, recent) {
		p := mustPart(t, b, task.ID)
		if err := b.rdb.ZScore(b.ctx, indexKey(p, ns, "echo"), task.ID).Err(); err != nil {
			t.Fatalf("entry of kept task %s: %v", task.ID, err)
		}
	}
	for _, task := range kept {
		b.get(t, task.ID)
	}
	for _, task := range append(deleted, gone...) {
		p := mustPart(t, b, task.ID)
		if err := b.rdb.ZScore(b.ctx, indexKey(p, ns, "echo"), task.ID).Err(); err == nil {
			t.Fatalf("entry of expired task %s is still there", task.ID)
		}
		if n := b.rdb.Exists(b.ctx, taskKey(p, task.ID)).Val(); n != 0 {
			t.Fatalf("task %s kept past its retention", task.ID)
		}
	}
	for _, task := range deleted {
		if task.Key == "" {
			continue
		}
		p := mustPart(t, b, task.ID)
		if n := b.rdb.Exists(b.ctx, dedupKey(p, ns, "echo", task.Key)).Val(); n != 0 {
			t.Fatalf("key mapping of task %s kept past its retention", task.ID)
		}
	}
}

// wantKeptThenTrimmed checks that finished task id (of lambda echo) has no
// TTL and is kept by the trim, and that a trim once the retention has run
// out since now deletes it and drops its index entry. The later trim runs
// as a store whose clock reads then: b's clock does not move.
func (b *testBundle) wantKeptThenTrimmed(t *testing.T, id string) {
	t.Helper()
	p := mustPart(t, b, id)
	if ttl := b.rdb.PTTL(b.ctx, taskKey(p, id)).Val(); ttl != -time.Nanosecond {
		t.Fatalf("finished task has a TTL (%s): the trim deletes it", ttl)
	}
	trimAt := func(at time.Time) {
		t.Helper()
		s := New(b.rdb, Options{Partitions: b.store.Partitions(), Retention: time.Hour, Now: func() time.Time { return at }})
		curs := make([]TrimCursor, 1)
		for range 1000 {
			_, next, done, err := s.TrimIndexes(b.ctx, p, []LambdaRef{{Namespace: ns, Name: "echo"}}, curs, 100)
			if err != nil {
				t.Fatal(err)
			}
			if done[0] {
				return
			}
			curs = next
		}
		t.Fatal("trim: no end")
	}
	trimAt(b.clock.Now())
	if n := b.rdb.Exists(b.ctx, taskKey(p, id)).Val(); n != 1 {
		t.Fatal("finished task deleted within its retention")
	}
	trimAt(b.clock.Now().Add(time.Hour + time.Millisecond))
	if n := b.rdb.Exists(b.ctx, taskKey(p, id)).Val(); n != 0 {
		t.Fatal("finished task kept past its retention")
	}
	if err := b.rdb.ZScore(b.ctx, indexKey(p, ns, "echo"), id).Err(); err == nil {
		t.Fatal("index entry kept past the task's retention")
	}
}
