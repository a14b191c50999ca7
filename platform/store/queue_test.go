package store

import (
	"slices"
	"testing"
	"time"
)

// popLambda is a lambda's ten queues, highest priority first.
func (b *testBundle) popLambda(name string, cap int) PopLambda {
	l := PopLambda{Running: b.store.RunningKey(ns, name), Cap: cap, Lease: time.Minute}
	for p := 9; p >= 0; p-- {
		l.Queues = append(l.Queues, b.store.QueueKey(ns, name, p))
	}
	return l
}

func ids(ps []Popped) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.TaskID
	}
	return out
}

// TestPopTakesTurns: a flood of one lambda does not shadow another's task.
func TestPopTakesTurns(t *testing.T) {
	b := setup(t)
	var flood []string
	for range 50 {
		flood = append(flood, b.schedule(t, NewTask{Lambda: "flood"}).ID)
	}
	other := b.schedule(t, NewTask{Lambda: "other"})
	got, err := b.store.Pop(b.ctx, []PopLambda{b.popLambda("flood", 0), b.popLambda("other", 0)}, 4, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	// Two lambdas share four: two each; "other" has one, so its second goes
	// to the flood. Each lambda's tasks come in their queue's order.
	want := []string{flood[0], flood[1], other.ID, flood[2]}
	if !slices.Equal(ids(got), want) {
		t.Fatalf("Pop = %v, want %v", ids(got), want)
	}
}

// TestPopCap: a lambda never has more tasks popped than its cap until
// slots are released or their leases run out.
func TestPopCap(t *testing.T) {
	b := setup(t)
	for range 5 {
		b.schedule(t, NewTask{Lambda: "capped"})
	}
	l := b.popLambda("capped", 2)
	got, err := b.store.Pop(b.ctx, []PopLambda{l}, 10, 0, "")
	if err != nil || len(got) != 2 {
		t.Fatalf("Pop = %v %v, want 2 tasks", got, err)
	}
	// At its cap: a blocking pop waits briefly and returns nothing.
	start := time.Now()
	more, err := b.store.Pop(b.ctx, []PopLambda{l}, 10, 5*time.Second, "")
	if err != nil || len(more) != 0 {
		t.Fatalf("Pop at cap = %v %v, want nothing", more, err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("Pop at cap with a backlog blocked %s; it must look again soon", waited)
	}
	if n, _ := b.store.Running(b.ctx, l.Running); n != 2 {
		t.Fatalf("running = %d, want 2", n)
	}
	if err := b.store.Release(b.ctx, l.Running, got[0].TaskID); err != nil {
		t.Fatal(err)
	}
	more, err = b.store.Pop(b.ctx, []PopLambda{l}, 10, 0, "")
	if err != nil || len(more) != 1 {
		t.Fatalf("Pop after a release = %v %v, want 1", more, err)
	}
	// A slot whose lease ran out (an executor died) frees by itself.
	b.clock.Advance(2 * time.Minute)
	more, err = b.store.Pop(b.ctx, []PopLambda{l}, 10, 0, "")
	if err != nil || len(more) != 2 {
		t.Fatalf("Pop after the leases ran out = %v %v, want the last 2", more, err)
	}
}

// TestPopBlockedAdmitsUnderCap: a task pushed while a capped lambda's pop
// blocks is admitted and counted.
func TestPopBlockedAdmitsUnderCap(t *testing.T) {
	b := setup(t)
	l := b.popLambda("capped", 1)
	done := make(chan []Popped, 1)
	go func() {
		got, err := b.store.Pop(b.ctx, []PopLambda{l}, 5, 3*time.Second, "")
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	time.Sleep(100 * time.Millisecond)
	task := b.schedule(t, NewTask{Lambda: "capped"})
	select {
	case got := <-done:
		if !slices.Equal(ids(got), []string{task.ID}) {
			t.Fatalf("Pop = %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Pop did not return")
	}
	if n, _ := b.store.Running(b.ctx, l.Running); n != 1 {
		t.Fatalf("running = %d, want 1", n)
	}
}

// TestPopInterrupt: a token on the control list ends a blocked pop.
func TestPopInterrupt(t *testing.T) {
	b := setup(t)
	control := b.store.ControlKey("c1")
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		got, err := b.store.Pop(b.ctx, []PopLambda{b.popLambda("echo", 0)}, 5, 10*time.Second, control)
		if err != nil || len(got) != 0 {
			t.Errorf("interrupted Pop = %v %v", got, err)
		}
		done <- time.Since(start)
	}()
	time.Sleep(100 * time.Millisecond)
	if err := b.store.Interrupt(b.ctx, control, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-done:
		if d > 2*time.Second {
			t.Fatalf("interrupt took %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Interrupt did not end the pop")
	}
}

// TestScheduleAfterScriptFlush: a server that lost its scripts (restarted)
// still gets a due task into its queue, even when the first push was
// popped before the task existed.
func TestScheduleAfterScriptFlush(t *testing.T) {
	b := setup(t)
	b.schedule(t, NewTask{Lambda: "echo"})
	if _, err := b.store.Pop(b.ctx, []PopLambda{b.popLambda("echo", 0)}, 10, 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.ScriptFlush(b.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	task := b.schedule(t, NewTask{Lambda: "echo"})
	got, err := b.store.Pop(b.ctx, []PopLambda{b.popLambda("echo", 0)}, 10, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got {
		if p.TaskID != task.ID {
			t.Fatalf("popped %v", got)
		}
	}
	claimed, err := b.store.Claim(b.ctx, []ClaimRequest{{TaskID: task.ID, LambdaVersion: 1}}, claimTmo)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("the task is not claimable from its queue after a script flush: popped %v, claimed %v, %v", got, claimed, err)
	}
}

// TestPopBlockedTakesBurst: tasks pushed at once while a pop is blocked
// are taken together by it (BLMPOP), not one per round trip; where the
// server lacks BLMPOP (miniredis) the pop falls back to one.
func TestPopBlockedTakesBurst(t *testing.T) {
	for name, setup := range map[string]func(*testing.T) *testBundle{"redis": setup, "miniredis": setupMiniredis} {
		t.Run(name, func(t *testing.T) {
			b := setup(t)
			l := b.popLambda("burst", 0)
			done := make(chan []Popped, 1)
			go func() {
				got, err := b.store.Pop(b.ctx, []PopLambda{l}, 5, 3*time.Second, "")
				if err != nil {
					t.Error(err)
				}
				done <- got
			}()
			time.Sleep(100 * time.Millisecond)
			q := b.store.QueueKey(ns, "burst", 0)
			if err := b.rdb.LPush(b.ctx, q, "a", "b", "c").Err(); err != nil {
				t.Fatal(err)
			}
			var got []Popped
			select {
			case got = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("blocked Pop did not return")
			}
			want := []string{"a", "b", "c"}
			if name == "miniredis" {
				want = want[:1]
			}
			if !slices.Equal(ids(got), want) {
				t.Fatalf("Pop = %v, want %v", ids(got), want)
			}
		})
	}
}

// TestPopInterruptGivesBackTokens: a blocked pop that takes several
// control tokens at once leaves the others' for the other blocked pops.
func TestPopInterruptGivesBackTokens(t *testing.T) {
	b := setup(t)
	control := b.store.ControlKey("c2")
	done := make(chan struct{})
	go func() {
		defer close(done)
		got, err := b.store.Pop(b.ctx, []PopLambda{b.popLambda("echo", 0)}, 5, 3*time.Second, control)
		if err != nil || len(got) != 0 {
			t.Errorf("interrupted Pop = %v %v", got, err)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := b.store.Interrupt(b.ctx, control, 3); err != nil {
		t.Fatal(err)
	}
	<-done
	if n, err := b.rdb.LLen(b.ctx, control).Result(); err != nil || n != 2 {
		t.Fatalf("control list holds %d tokens (%v), want the 2 others'", n, err)
	}
}
