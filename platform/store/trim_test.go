package store

import (
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// TestTrimIndex: entries of tasks gone (their retention ran out) leave the
// index sets; entries of tasks kept, however old, stay; a chunked walk
// with its cursor misses none.
func TestTrimIndex(t *testing.T) { testTrimIndex(t, setup(t)) }

// TestTrimIndexMiniredis: the same on miniredis, which `atf dev` may run on.
func TestTrimIndexMiniredis(t *testing.T) { testTrimIndex(t, setupMiniredis(t)) }

func testTrimIndex(t *testing.T, b *testBundle) {
	b.deployEcho(t)
	// Old tasks: finished ones (their hashes are deleted below, as their
	// expiry would), and live ones created as long ago.
	var gone, kept []Task
	for i := range 30 {
		task := b.running(t, NewTask{})
		if _, err := b.store.SetResult(b.ctx, Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			kept = append(kept, task) // finished, not expired yet
		} else {
			gone = append(gone, task)
		}
		kept = append(kept, b.schedule(t, NewTask{ExecuteAt: b.clock.Now().Add(30 * 24 * time.Hour)}))
	}
	for _, task := range gone {
		p := mustPart(t, b, task.ID)
		b.rdb.Del(b.ctx, taskKey(p, task.ID))
	}
	b.clock.Advance(time.Hour + time.Minute) // past the retention
	// Recent: expired early (deleted by hand) but created after the
	// cutoff, so not looked at.
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
	if removed != len(gone) {
		t.Fatalf("dropped %d entries, want %d", removed, len(gone))
	}
	for _, task := range append(kept, recent) {
		p := mustPart(t, b, task.ID)
		if err := b.rdb.ZScore(b.ctx, indexKey(p, ns, "echo"), task.ID).Err(); err != nil {
			t.Fatalf("entry of kept task %s: %v", task.ID, err)
		}
	}
	for _, task := range gone {
		p := mustPart(t, b, task.ID)
		if err := b.rdb.ZScore(b.ctx, indexKey(p, ns, "echo"), task.ID).Err(); err == nil {
			t.Fatalf("entry of expired task %s is still there", task.ID)
		}
	}
}
