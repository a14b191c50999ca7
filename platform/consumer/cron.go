package consumer

// Periodic tasks (ATF's future work). Beside moving due tasks, a consumer
// creates the tasks of the lambdas' cron schedules whose partition
// (store.SchedulePartition) it owns. At each tick it schedules one task due
// at the tick with the key store.CronKey(tick): a tick created twice — two
// consumers while a partition changes hands, a consumer restarted within
// the tick, a clock a little off — deduplicates to one task, so every tick
// has exactly one task however many consumers run.
//
// Schedules are read when one changes (the store's atf:cron channel) and
// every cronRefresh otherwise; between ticks the loop sleeps. Ticks missed
// while no consumer owned the schedule (a partition's hand-over, planned or
// after its owner died) are made up when they are within cronCatchUp; of
// older ones only the latest is.

import (
	"context"
	"errors"
	"time"

	"github.com/robfig/cron/v3"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/telemetry"
)

// CronStore is the optional capability of a Store that keeps schedules;
// *store.Store has it. A consumer over a Store without it creates no
// periodic tasks.
type CronStore interface {
	Schedules(ctx context.Context) ([]store.Schedule, error)
	ScheduleChanges(ctx context.Context) <-chan struct{}
	SchedulePartition(ns, lambda string) int
	GetLambda(ctx context.Context, ns, name string) (store.Lambda, error)
	Schedule(ctx context.Context, t store.NewTask) (store.Task, bool, error)
	// DispatchLead is how long before its tick a tick's task is made: the
	// store enqueues a task due that soon at once, and its executor holds
	// it until the tick.
	DispatchLead() time.Duration
}

const (
	// cronRefresh bounds how long a missed change notification goes
	// unnoticed.
	cronRefresh = 30 * time.Second
	// cronCatchUp: a tick this recent that no task was made for yet is
	// made late rather than never (the store deduplicates it if another
	// consumer made it).
	cronCatchUp = 15 * time.Second
)

// cronEntry is one schedule and the last tick handled.
type cronEntry struct {
	sc   store.Schedule
	spec cron.Schedule
	last time.Time
}

// cronState is the schedules a consumer knows.
type cronState struct {
	entries map[string]*cronEntry // by "<ns>/<lambda>"
}

// runCron creates the periodic tasks of the owned schedules until ctx ends.
func (c *Consumer) runCron(ctx context.Context, cs CronStore) {
	changes := cs.ScheduleChanges(ctx)
	st := &cronState{entries: map[string]*cronEntry{}}
	var refreshAt time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		if !now.Before(refreshAt) {
			if err := c.loadCron(ctx, cs, st, now); err != nil && ctx.Err() == nil {
				c.cfg.Logger.Warn("reading cron schedules failed; retrying", "err", err)
				refreshAt = now.Add(time.Second)
			} else {
				refreshAt = now.Add(cronRefresh)
			}
		}
		next := c.cronOnce(ctx, cs, st, now)
		timer.Reset(max(time.Until(cronWake(next, refreshAt, cs.DispatchLead())), 0))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case _, ok := <-changes:
			if !ok {
				changes = nil
			}
			refreshAt = time.Time{}
			timer.Stop()
		}
	}
}

// cronWake is when the cron loop looks again: the dispatch lead before the
// next tick (zero: none), or at the next refresh if that is sooner.
func cronWake(next, refreshAt time.Time, lead time.Duration) time.Time {
	if next.IsZero() {
		return refreshAt
	}
	if early := next.Add(-lead); early.Before(refreshAt) {
		return early
	}
	return refreshAt
}

// loadCron reads the schedules. An unchanged schedule keeps its last tick;
// a new or changed one starts cronCatchUp before now.
func (c *Consumer) loadCron(ctx context.Context, cs CronStore, st *cronState, now time.Time) error {
	all, err := cs.Schedules(ctx)
	if err != nil {
		return err
	}
	entries := make(map[string]*cronEntry, len(all))
	for _, sc := range all {
		id := sc.Namespace + "/" + sc.Lambda
		if old, ok := st.entries[id]; ok && old.sc.Cron == sc.Cron && old.sc.UpdatedAt.Equal(sc.UpdatedAt) {
			entries[id] = old
			continue
		}
		spec, err := cron.ParseStandard(sc.Cron)
		if err != nil {
			c.cfg.Logger.Warn("skipping a schedule whose cron does not parse", "lambda", sc.Lambda, "cron", sc.Cron, "err", err)
			continue
		}
		last := now.Add(-cronCatchUp)
		if sc.UpdatedAt.After(last) {
			last = sc.UpdatedAt // no tick from before the schedule was set
		}
		entries[id] = &cronEntry{sc: sc, spec: spec, last: last}
	}
	st.entries = entries
	return nil
}

// cronOnce creates the tasks of every owned schedule's ticks that are due
// within the dispatch lead (dueTicks) and returns the earliest tick to
// come among all schedules (zero: none). Tests call it directly.
func (c *Consumer) cronOnce(ctx context.Context, cs CronStore, st *cronState, now time.Time) time.Time {
	var next time.Time
	for _, e := range st.entries {
		if !c.owns(cs.SchedulePartition(e.sc.Namespace, e.sc.Lambda)) {
			// Another consumer's: follow its ticks without acting, so that
			// gaining the partition does not replay old ones.
			for t := e.spec.Next(e.last); !t.IsZero() && !t.After(now.Add(-cronCatchUp)); t = e.spec.Next(t) {
				e.last = t
			}
			// Wake at its ticks all the same (no Redis cost): the
			// partition may be ours by then.
			if t := e.spec.Next(now); !t.IsZero() && (next.IsZero() || t.Before(next)) {
				next = t
			}
			continue
		}
		// A tick's task is made the dispatch lead ahead (due at the tick:
		// the store enqueues it at once and the executor holds it until
		// then), so that it starts on the tick.
		for _, due := range dueTicks(e, now.Add(cs.DispatchLead())) {
			err := c.createTick(ctx, cs, e.sc, due)
			if errors.Is(err, store.ErrNotFound) {
				// The lambda was deleted and its schedule left behind.
				c.cfg.Logger.Info("skipping a tick of a schedule whose lambda is gone", "lambda", e.sc.Lambda, "tick", due)
				err = nil
			}
			if err != nil {
				if ctx.Err() == nil {
					c.cfg.Logger.Warn("creating a periodic task failed; retrying", "lambda", e.sc.Lambda, "tick", due, "err", err)
				}
				// Not recorded as done: the next pass tries again soon.
				retry := now.Add(time.Second)
				if next.IsZero() || retry.Before(next) {
					next = retry
				}
				break
			}
			e.last = due
		}
		if t := e.spec.Next(e.last); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// dueTicks are the ticks of e after its last and not after now to make
// tasks for: every one within cronCatchUp (a partition handed over between
// consumers may have gone unowned for a few ticks of a fast schedule), or,
// when none is that recent, the latest alone (a consumer that slept an
// hour does not replay the hour).
func dueTicks(e *cronEntry, now time.Time) []time.Time {
	var due []time.Time
	var latest time.Time
	for t := e.spec.Next(e.last); !t.IsZero() && !t.After(now); t = e.spec.Next(t) {
		latest = t
		if t.After(now.Add(-cronCatchUp)) {
			due = append(due, t)
		}
	}
	if len(due) == 0 && !latest.IsZero() {
		due = append(due, latest)
	}
	return due
}

// createTick schedules a schedule's task for one tick.
func (c *Consumer) createTick(ctx context.Context, cs CronStore, sc store.Schedule, tick time.Time) error {
	l, err := cs.GetLambda(ctx, sc.Namespace, sc.Lambda)
	if err != nil {
		return err
	}
	t, dedup, err := cs.Schedule(ctx, store.NewTask{
		Namespace:   sc.Namespace,
		Lambda:      sc.Lambda,
		Payload:     sc.Payload,
		ExecuteAt:   tick,
		Priority:    sc.Priority,
		Key:         store.CronKey(tick),
		Collection:  sc.Collection,
		MaxAttempts: l.MaxAttempts,
	})
	if err != nil {
		return err
	}
	if !dedup && t.State == atfv1.TaskState_TASK_STATE_ENQUEUED { // due already: Schedule pushed it
		telemetry.TaskPushed(ctx, t.Lambda, telemetry.ReasonDue)
	}
	c.cfg.Logger.Debug("periodic task", "lambda", sc.Lambda, "tick", tick, "task", t.ID, "deduplicated", dedup)
	return nil
}
