package store

import (
	"context"
	"fmt"
	"time"
)

// Schedule stores a new task. A task due now (ExecuteAt zero or not after
// now) is stored ENQUEUED and pushed to its queue at once; a later one is
// stored NEW and the consumer enqueues it when due. A task with a Key that
// maps to a task still kept (live, or finished within the retention) is
// not stored: that task is returned with deduplicated = true.
func (s *Store) Schedule(ctx context.Context, nt NewTask) (Task, bool, error) {
	if err := checkNewTask(nt); err != nil {
		return Task{}, false, err
	}
	op := &scheduleOp{pt: s.prepare(nt, s.now(), nil)}
	if err := s.schedules.Do(ctx, op); err != nil {
		return Task{}, false, fmt.Errorf("store: schedule %s task: %w", nt.Lambda, err)
	}
	if op.err != nil {
		return Task{}, false, fmt.Errorf("store: schedule %s task: %w", nt.Lambda, op.err)
	}
	return scheduled(op.pt, op.reply)
}

// scheduleOp is one Schedule in a batch of storeTasks: its task, and once
// run, the script's reply for it or the batch's error.
type scheduleOp struct {
	pt    preparedTask
	reply any
	err   error
}

// schedule stores the tasks of concurrent Schedule calls together.
func (s *Store) schedule(ctx context.Context, ops []*scheduleOp) {
	pts := make([]preparedTask, len(ops))
	for i, op := range ops {
		pts[i] = op.pt
	}
	replies, err := s.storeTasks(ctx, pts)
	for i, op := range ops {
		if op.err = err; err == nil {
			op.reply = replies[i]
		}
	}
}

// GetTask returns a task.
func (s *Store) GetTask(ctx context.Context, ns, id string) (Task, error) {
	p, err := s.PartitionOf(id)
	if err != nil {
		return Task{}, err
	}
	h, err := s.rdb.HGetAll(ctx, taskKey(p, id)).Result()
	if err != nil {
		return Task{}, fmt.Errorf("store: get task %s: %w", id, err)
	}
	if len(h) == 0 || namespaceOf(h[fNamespace]) != ns {
		return Task{}, errorf(ErrNotFound, "task %q not found", id)
	}
	return decodeTask(id, h)
}

// Cancel cancels a task. A task that is not running (NEW, ENQUEUED,
// RETRIABLE_FAILURE) is CANCELLED at once; a running one (CLAIMED,
// PROCESSING) keeps its state with CancelRequested set: its executor's
// next heartbeat is answered DIRECTIVE_CANCEL and the executor reports
// OUTCOME_CANCELLED (or the heartbeat timeout ends it as CANCELLED). A
// finished task is ErrWrongState.
func (s *Store) Cancel(ctx context.Context, ns, id string) (Task, error) {
	p, err := s.checkOwner(ctx, ns, id)
	if err != nil {
		return Task{}, err
	}
	now := s.now()
	res, err := cancelScript.Run(ctx, s.rdb, []string{taskKey(p, id), triggerKey(p)},
		id, ms(now)).Slice()
	if err != nil {
		return Task{}, fmt.Errorf("store: cancel task %s: %w", id, err)
	}
	t, code, err := taskReply(id, res)
	if err != nil {
		return Task{}, err
	}
	if code == 3 {
		return t, errorf(ErrWrongState, "task %s already finished (%s)", id, t.State)
	}
	return t, nil
}

// Retry runs a FATAL_FAILURE (dead letter) or CANCELLED task again: it is
// ENQUEUED with attempt 0, its cancel flag cleared (no longer finished,
// the trim keeps it; one finished by an earlier version has its TTL
// lifted), and pushed to its queue. Its error stays until the next result.
// A task whose execute_at is still ahead (cancelled before its time) goes
// back to NEW and waits for it instead: a task never starts early. Other
// states are ErrWrongState.
func (s *Store) Retry(ctx context.Context, ns, id string) (Task, error) {
	p, v, err := s.readOwned(ctx, ns, id, fWork, fExecuteAt)
	if err != nil {
		return Task{}, err
	}
	// A task cancelled before its time waits for it again: never early.
	xa, err := executeAtOf(id, v[0], v[1])
	if err != nil {
		return Task{}, err
	}
	now := s.now()
	next, later := now.Add(s.opts.EnqueueTimeout), "0"
	if at := xa.Add(-s.opts.DispatchLead); at.After(now) {
		next, later = at, "1"
	}
	res, err := retryScript.Run(ctx, s.rdb, []string{taskKey(p, id), triggerKey(p)},
		id, ms(now), ms(next), partPrefix(p), wakeFor(now, next), p, later).Slice()
	if err != nil {
		return Task{}, fmt.Errorf("store: retry task %s: %w", id, err)
	}
	t, code, err := taskReply(id, res)
	if err != nil {
		return Task{}, err
	}
	if code == 3 {
		return t, errorf(ErrWrongState, "task %s is %s: only a FATAL_FAILURE or CANCELLED task can be retried", id, t.State)
	}
	if later == "0" {
		// As in Schedule: a lost push is redone by the enqueue timeout.
		_ = s.rdb.LPush(ctx, s.QueueKey(t.Namespace, t.Lambda, t.Priority), id).Err()
	}
	return t, nil
}

// executeAtOf is a task's execute_at from its work field or, stored
// before that, its own field (HMGET values).
func executeAtOf(id string, work, old any) (time.Time, error) {
	if w, _ := work.(string); w != "" {
		d, err := decodeWork(w)
		if err != nil {
			return time.Time{}, fmt.Errorf("store: task %s: %w", id, err)
		}
		return d.executeAt, nil
	}
	xa, _ := old.(string)
	return msTime(xa), nil
}

// checkOwner finds a task's partition and checks that it belongs to ns.
func (s *Store) checkOwner(ctx context.Context, ns, id string) (int, error) {
	p, _, err := s.readOwned(ctx, ns, id)
	return p, err
}

// readOwned is checkOwner that also reads fields of the task hash, in the
// same round trip (a nil for each one missing).
func (s *Store) readOwned(ctx context.Context, ns, id string, fields ...string) (int, []any, error) {
	p, err := s.PartitionOf(id)
	if err != nil {
		return 0, nil, err
	}
	// The state tells a task that exists: one of the default namespace
	// has no namespace field.
	v, err := s.rdb.HMGet(ctx, taskKey(p, id), append([]string{fState, fNamespace}, fields...)...).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("store: task %s: %w", id, err)
	}
	owner, _ := v[1].(string)
	if v[0] == nil || namespaceOf(owner) != ns {
		return 0, nil, errorf(ErrNotFound, "task %q not found", id)
	}
	return p, v[2:], nil
}

// taskReply reads a {code, {task hash}} script reply; code 0 is not found.
func taskReply(id string, res []any) (Task, int64, error) {
	code, _ := res[0].(int64)
	if code == 0 || len(res) < 2 {
		return Task{}, 0, errorf(ErrNotFound, "task %q not found", id)
	}
	fields, err := pairsToMap(res[1])
	if err != nil {
		return Task{}, 0, err
	}
	t, err := decodeTask(id, fields)
	return t, code, err
}
