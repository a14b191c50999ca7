package consumer

import (
	"context"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/platform/store"
)

// crashing is a store whose consumer cannot give its partitions up: it
// behaves like a consumer that was killed.
type crashing struct{ *store.Store }

func (crashing) ReleasePartitions(context.Context, string) error { return nil }

type testBundle struct {
	ctx   context.Context
	store *store.Store
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	t.Parallel()
	return &testBundle{ctx: t.Context(), store: store.New(redistest.Start(t), store.Options{})}
}

func (b *testBundle) start(t *testing.T, s Store, id string, lease time.Duration) (*Consumer, context.CancelFunc) {
	t.Helper()
	c := New(Config{Store: s, ID: id, Lease: lease, Sweep: time.Second})
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return c, stop
}

func (c *Consumer) ownedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.owned)
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestLeasesShareAndTakeOver: two consumers split the partitions; when one
// is killed the other owns them all within one lease period, and tasks of
// every partition still move.
func TestLeasesShareAndTakeOver(t *testing.T) {
	b := setup(t)
	const lease = 800 * time.Millisecond
	n := b.store.Partitions()
	a, killA := b.start(t, crashing{b.store}, "a", lease)
	c, _ := b.start(t, b.store, "c", lease)
	eventually(t, 5*time.Second, "an even split", func() bool { return a.ownedCount() == n/2 && c.ownedCount() == n/2 })

	killA()
	took := eventually(t, 3*lease, "takeover", func() bool { return c.ownedCount() == n })
	if took > lease+lease/4+200*time.Millisecond {
		t.Errorf("takeover took %s, lease is %s", took, lease)
	}

	// Tasks due soon in every partition are enqueued by the survivor.
	if _, err := b.store.DeployLambda(b.ctx, store.Lambda{Namespace: "default", Name: "l", SHA256: "x"}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 64 {
		task, _, err := b.store.Schedule(b.ctx, store.NewTask{Namespace: "default", Lambda: "l", ExecuteAt: time.Now().Add(time.Duration(i) * time.Millisecond)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, task.ID)
	}
	eventually(t, 5*time.Second, "every task enqueued", func() bool {
		for _, id := range ids {
			task, err := b.store.GetTask(b.ctx, "default", id)
			if err != nil || task.State != atfv1.TaskState_TASK_STATE_ENQUEUED {
				return false
			}
		}
		return true
	})
}

// TestScheduledTaskEnqueuedOnTime: a task scheduled for later is enqueued
// at its time, not before, and without waiting for a sweep.
func TestScheduledTaskEnqueuedOnTime(t *testing.T) {
	b := setup(t)
	b.start(t, b.store, "a", time.Second)
	if _, err := b.store.DeployLambda(b.ctx, store.Lambda{Namespace: "default", Name: "l", SHA256: "x"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the consumer sleeps now
	at := time.Now().Add(300 * time.Millisecond)
	task, _, err := b.store.Schedule(b.ctx, store.NewTask{Namespace: "default", Lambda: "l", ExecuteAt: at})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "enqueued", func() bool {
		got, err := b.store.GetTask(b.ctx, "default", task.ID)
		return err == nil && got.State == atfv1.TaskState_TASK_STATE_ENQUEUED
	})
	got, _ := b.store.GetTask(b.ctx, "default", task.ID)
	if got.EnqueuedAt.Before(at.Truncate(time.Millisecond)) {
		t.Fatalf("enqueued at %s, before its time %s", got.EnqueuedAt, at)
	}
	if late := got.EnqueuedAt.Sub(at); late > 200*time.Millisecond {
		t.Errorf("enqueued %s late", late)
	}
}
