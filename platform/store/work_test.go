package store

import (
	"slices"
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
}
