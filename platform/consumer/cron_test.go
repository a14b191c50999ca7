package consumer

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/platform/store"
	"github.com/robfig/cron/v3"
)

func (b *testBundle) deploy(t *testing.T, name string) {
	t.Helper()
	if _, err := b.store.DeployLambda(b.ctx, store.Lambda{Namespace: "default", Name: name, SHA256: "00", MaxAttempts: 2}); err != nil {
		t.Fatal(err)
	}
}

func (b *testBundle) tasks(t *testing.T, lambda string) []store.Task {
	t.Helper()
	ts, _, err := b.store.ListTasks(b.ctx, store.ListFilter{Namespace: "default", Lambda: lambda, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestCronOnce drives the tick logic with a hand-set clock: one task per
// tick, at the tick, with the tick's key; none for a consumer that does
// not own the schedule's partition; two owners make one task.
func TestCronOnce(t *testing.T) {
	b := setup(t)
	b.deploy(t, "tick")
	if err := b.store.SetSchedule(b.ctx, store.Schedule{Namespace: "default", Lambda: "tick", Cron: "*/5 * * * *", Payload: []byte("p"), Priority: 2, Collection: "cron"}); err != nil {
		t.Fatal(err)
	}
	p := b.store.SchedulePartition("default", "tick")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	owner1 := New(Config{Store: b.store, Partitions: []int{p}, Logger: quiet})
	owner2 := New(Config{Store: b.store, Partitions: []int{p}, Logger: quiet})
	other := New(Config{Store: b.store, Partitions: []int{(p + 1) % b.store.Partitions()}, Logger: quiet})

	// The schedule was set just now (real clock); tick times are driven by hand from there.
	start := time.Now().UTC()
	base := start.Truncate(5 * time.Minute).Add(5 * time.Minute) // the next tick
	states := map[*Consumer]*cronState{}
	for _, c := range []*Consumer{owner1, owner2, other} {
		states[c] = &cronState{}
		if err := c.loadCron(b.ctx, b.store, states[c], start); err != nil {
			t.Fatal(err)
		}
	}
	run := func(c *Consumer, now time.Time) time.Time { return c.cronOnce(b.ctx, b.store, states[c], now) }

	if next := run(owner1, start); !next.Equal(base) {
		t.Fatalf("next tick %s, want %s", next, base)
	}
	if n := len(b.tasks(t, "tick")); n != 0 {
		t.Fatalf("%d tasks before the first tick", n)
	}
	for _, c := range []*Consumer{owner1, owner2, other} {
		run(c, base.Add(3*time.Millisecond))
	}
	ts := b.tasks(t, "tick")
	if len(ts) != 1 {
		t.Fatalf("%d tasks for one tick, want 1: %v", len(ts), ts)
	}
	task := ts[0]
	if task.Key != store.CronKey(base) || !task.ExecuteAt.Equal(base) || string(task.Payload) != "p" || task.Priority != 2 || task.Collection != "cron" || task.MaxAttempts != 2 {
		t.Fatalf("tick task = %+v", task)
	}
	// A pass within the same tick makes nothing more; the next tick one more.
	run(owner1, base.Add(time.Minute))
	if next := run(owner2, base.Add(5*time.Minute)); !next.Equal(base.Add(10 * time.Minute)) {
		t.Fatalf("next tick %s", next)
	}
	if n := len(b.tasks(t, "tick")); n != 2 {
		t.Fatalf("%d tasks after two ticks, want 2", n)
	}
	// Missed ticks (the consumer slept an hour) make one task, the latest.
	run(owner1, base.Add(65*time.Minute+time.Second))
	ts = b.tasks(t, "tick")
	if len(ts) != 3 || ts[0].Key != store.CronKey(base.Add(65*time.Minute)) {
		t.Fatalf("after a long gap: %d tasks, newest %+v", len(ts), ts[0])
	}
}

// TestDueTicks: after a gap, every tick within cronCatchUp is made (a
// partition that went unowned for a few ticks of a fast schedule), and of
// older ones only the latest.
func TestDueTicks(t *testing.T) {
	spec, err := cron.ParseStandard("@every 1s")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		last, now time.Time
		want      []time.Time
	}{
		{"none due", base, base.Add(500 * time.Millisecond), nil},
		{"one", base, base.Add(1200 * time.Millisecond), []time.Time{base.Add(time.Second)}},
		{"a hand-over gap", base, base.Add(3500 * time.Millisecond), []time.Time{base.Add(time.Second), base.Add(2 * time.Second), base.Add(3 * time.Second)}},
		{"an hour asleep", base, base.Add(time.Hour + 100*time.Millisecond), nil}, // filled below
	} {
		e := &cronEntry{spec: spec, last: tc.last}
		got := dueTicks(e, tc.now)
		want := tc.want
		if tc.name == "an hour asleep" { // the 15 ticks within cronCatchUp
			for i := 14; i >= 0; i-- {
				want = append(want, base.Add(time.Hour-time.Duration(i)*time.Second))
			}
		}
		if !slices.EqualFunc(got, want, time.Time.Equal) {
			t.Errorf("%s: due %v, want %v", tc.name, got, want)
		}
	}
}

// TestCronRun runs two consumers sharing partitions by leases with an
// every-second schedule: each tick has exactly one task.
func TestCronRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 4s")
	}
	b := setup(t)
	b.deploy(t, "tick")
	b.start(t, b.store, "c1", 2*time.Second)
	b.start(t, b.store, "c2", 2*time.Second)
	time.Sleep(200 * time.Millisecond)
	if err := b.store.SetSchedule(b.ctx, store.Schedule{Namespace: "default", Lambda: "tick", Cron: "@every 1s"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	if err := b.store.DeleteSchedule(b.ctx, "default", "tick"); err != nil {
		t.Fatal(err)
	}
	ts := b.tasks(t, "tick")
	var keys []string
	for _, task := range ts {
		keys = append(keys, task.Key)
		// On time, or, for a tick that fell while the partition changed
		// hands (the consumers balance their leases as they start), made
		// up by the new owner within a lease period.
		if lateness := task.CreatedAt.Sub(task.ExecuteAt); lateness > 2500*time.Millisecond || lateness < 0 {
			t.Errorf("task for tick %s created %s after it", task.ExecuteAt, lateness)
		}
	}
	slices.Sort(keys)
	if len(ts) < 3 || len(ts) > 4 || len(slices.Compact(slices.Clone(keys))) != len(keys) {
		t.Fatalf("%d tasks in 3.5s of an every-second schedule, keys %v", len(ts), keys)
	}
}

// TestCronDispatchLead: with a dispatch lead, a tick's task is made that
// much before the tick (due at the tick), not earlier.
func TestCronDispatchLead(t *testing.T) {
	t.Parallel()
	const lead = 50 * time.Millisecond
	b := &testBundle{ctx: t.Context(), store: store.New(redistest.Start(t), store.Options{DispatchLead: lead})}
	b.deploy(t, "tick")
	if err := b.store.SetSchedule(b.ctx, store.Schedule{Namespace: "default", Lambda: "tick", Cron: "*/5 * * * *"}); err != nil {
		t.Fatal(err)
	}
	c := New(Config{Store: b.store, Partitions: []int{b.store.SchedulePartition("default", "tick")},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	start := time.Now().UTC()
	tick := start.Truncate(5 * time.Minute).Add(5 * time.Minute)
	st := &cronState{}
	if err := c.loadCron(b.ctx, b.store, st, start); err != nil {
		t.Fatal(err)
	}
	c.cronOnce(b.ctx, b.store, st, tick.Add(-lead-time.Millisecond))
	if ts := b.tasks(t, "tick"); len(ts) != 0 {
		t.Fatalf("%d tasks made before the lead", len(ts))
	}
	c.cronOnce(b.ctx, b.store, st, tick.Add(-lead))
	if ts := b.tasks(t, "tick"); len(ts) != 1 || !ts[0].ExecuteAt.Equal(tick) || ts[0].Key != store.CronKey(tick) {
		t.Fatalf("tasks within the lead: %+v, want one due at %s", ts, tick)
	}
}

// TestCronWake: the loop wakes the lead before the next tick, or at the
// refresh; with no tick to come, at the refresh — never at once (a zero
// tick less the lead once made it spin).
func TestCronWake(t *testing.T) {
	refresh := time.Date(2030, 1, 1, 0, 0, 30, 0, time.UTC)
	tick := refresh.Add(-10 * time.Second)
	for _, tc := range []struct {
		next time.Time
		lead time.Duration
		want time.Time
	}{
		{time.Time{}, 0, refresh},
		{time.Time{}, 20 * time.Millisecond, refresh},
		{tick, 0, tick},
		{tick, 20 * time.Millisecond, tick.Add(-20 * time.Millisecond)},
		{refresh.Add(time.Minute), 20 * time.Millisecond, refresh},
	} {
		if got := cronWake(tc.next, refresh, tc.lead); !got.Equal(tc.want) {
			t.Errorf("cronWake(%v, lead %v) = %v, want %v", tc.next, tc.lead, got, tc.want)
		}
	}
}
