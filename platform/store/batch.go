package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// MaxBatch is the most tasks one ScheduleBatch stores.
const MaxBatch = 1000

// BatchResult is one task of a ScheduleBatch: the task stored, or the live
// task its key matched (Deduplicated).
type BatchResult struct {
	Task         Task
	Deduplicated bool
}

// BatchError is a batch refused because of one of its tasks. Unwrap gives
// the task's error (ErrInvalid for the store's own checks).
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("tasks[%d]: %v", e.Index, e.Err) }
func (e *BatchError) Unwrap() error { return e.Err }

// ScheduleBatch stores up to MaxBatch tasks, all or none, and returns one
// result per task in order. Every task is checked before anything is
// written; a bad one refuses the batch with a *BatchError naming its index.
// A task whose key matches a kept task (or one earlier in the same batch)
// is not stored: that task is its result, with Deduplicated set.
//
// Atomicity: on a standalone Redis the whole batch is one script, so Redis
// runs all of it or none of it (a script is refused as a whole, e.g. out
// of memory, before it writes anything). On Redis Cluster a script may only
// touch one slot, so the batch is one script per partition, sent in one
// pipeline: each partition's share is all or none, but a failure of one
// node (or a failover while the pipeline runs) can leave the shares of
// other partitions stored. The error then says so; scheduling the batch
// again with task keys makes that safe, since the stored tasks
// deduplicate.
//
// Tasks due now are pushed to their queues after the script, as Schedule
// does; a lost push is redone by the enqueue timeout.
func (s *Store) ScheduleBatch(ctx context.Context, tasks []NewTask) ([]BatchResult, error) {
	if len(tasks) == 0 {
		return []BatchResult{}, nil
	}
	if len(tasks) > MaxBatch {
		return nil, errorf(ErrInvalid, "a batch holds at most %d tasks, not %d", MaxBatch, len(tasks))
	}
	for i, nt := range tasks {
		if err := checkNewTask(nt); err != nil {
			return nil, &BatchError{Index: i, Err: err}
		}
	}
	now := s.now()
	pts := make([]preparedTask, len(tasks))
	for i, nt := range tasks {
		pts[i] = s.prepare(nt, now)
	}

	groups := s.scriptGroups(len(pts), func(i int) int { return pts[i].p })
	created := ms(now.Truncate(time.Millisecond))
	calls := make([]scriptCall, len(groups))
	for g, idx := range groups {
		calls[g] = scriptCall{keys: []string{triggerKey(pts[idx[0]].p)}, args: scheduleArgs(pts, idx, created)}
	}
	cmds, err := s.runPipelined(ctx, scheduleScript, calls)
	if err != nil {
		if len(groups) > 1 {
			stored := 0
			for _, c := range cmds {
				if c != nil && c.Err() == nil {
					stored++
				}
			}
			return nil, fmt.Errorf("store: schedule batch: %d of %d partition shares stored (schedule again with keys to complete it safely): %w", stored, len(groups), err)
		}
		return nil, fmt.Errorf("store: schedule batch: %w", err)
	}

	out := make([]BatchResult, len(tasks))
	push := map[string][]any{}
	var queues []string
	for g, idx := range groups {
		res, ok := cmds[g].Val().([]any)
		if !ok || len(res) != len(idx) {
			return nil, fmt.Errorf("store: schedule batch: unexpected script reply %T", cmds[g].Val())
		}
		for j, i := range idx {
			pt := pts[i]
			if dup, ok := res[j].([]any); ok && len(dup) == 2 {
				existing, _ := dup[0].(string)
				fields, err := pairsToMap(dup[1])
				if err != nil {
					return nil, err
				}
				t, err := decodeTask(existing, fields)
				if err != nil {
					return nil, err
				}
				out[i] = BatchResult{Task: t, Deduplicated: true}
				continue
			}
			out[i] = BatchResult{Task: pt.task}
			if pt.dueNow {
				if _, ok := push[pt.queue]; !ok {
					queues = append(queues, pt.queue)
				}
				push[pt.queue] = append(push[pt.queue], pt.id)
			}
		}
	}
	if len(queues) > 0 {
		pipe := s.rdb.Pipeline()
		for _, q := range queues {
			pipe.LPush(ctx, q, push[q]...) // in batch order: RPOP takes the first first
		}
		_, _ = pipe.Exec(ctx) // as in Schedule: the enqueue timeout redoes a lost push
	}
	return out, nil
}

// checkNewTask is what the store itself refuses of a new task.
func checkNewTask(nt NewTask) error {
	if nt.Priority < 0 || nt.Priority > 9 {
		return errorf(ErrInvalid, "priority %d is out of range 0-9", nt.Priority)
	}
	if nt.Lambda == "" {
		return errorf(ErrInvalid, "task has no lambda")
	}
	return nil
}

// preparedTask is a new task laid out as scheduleScript takes it.
type preparedTask struct {
	id     string
	p      int
	queue  string
	task   Task // as stored (times in whole milliseconds), when stored
	dueNow bool
	head   scheduleHead // what it may share with the tasks beside it
	// its own: the work field, key and collection
	work, key, col string
}

// scheduleHead is the run header of scheduleScript's ARGV: what a run of
// consecutive tasks shares.
type scheduleHead struct {
	ns, lam, st, max, queue, trigger, wake, enqueuedAt string
	keyed                                              bool // the tasks carry key and collection
}

// scheduleArgs is scheduleScript's ARGV for the tasks pts[i], i in idx, all
// created at created (ms).
func scheduleArgs(pts []preparedTask, idx []int, created string) []any {
	args := make([]any, 0, 1+10+2*len(idx))
	args = append(args, created)
	for j := 0; j < len(idx); {
		h := pts[idx[j]].head
		k := j + 1
		for k < len(idx) && pts[idx[k]].head == h {
			k++
		}
		keyed := "0"
		if h.keyed {
			keyed = "1"
		}
		args = append(args, k-j, h.ns, h.lam, h.st, h.max, h.queue, h.trigger, h.wake, h.enqueuedAt, keyed)
		for _, i := range idx[j:k] {
			args = append(args, pts[i].id, pts[i].work)
			if h.keyed {
				args = append(args, pts[i].key, pts[i].col)
			}
		}
		j = k
	}
	return args
}

// prepare lays out a checked new task: its id and partition, the task as
// it will be stored, and what scheduleScript takes of it.
func (s *Store) prepare(nt NewTask, now time.Time) preparedTask {
	if nt.MaxAttempts <= 0 {
		nt.MaxAttempts = DefaultMaxAttempts
	}
	now = now.Truncate(time.Millisecond) // as stored
	nowMS := ms(now)
	if nt.ExecuteAt.IsZero() {
		nt.ExecuteAt = now
	} else if r := nt.ExecuteAt.Truncate(time.Millisecond); !r.Equal(nt.ExecuteAt) {
		// Stored in whole milliseconds, rounded up: a task never starts early.
		nt.ExecuteAt = r.Add(time.Millisecond)
	}
	p := s.partitionFor(nt.Namespace, nt.Lambda, nt.Key)
	id := s.newID(p, now)
	queue := s.QueueKey(nt.Namespace, nt.Lambda, nt.Priority)
	// Enqueued DispatchLead before its time (the executor holds it).
	enqueueAt := nt.ExecuteAt.Add(-s.opts.DispatchLead)
	dueNow := !enqueueAt.After(now)
	t := Task{
		ID: id, Namespace: nt.Namespace, Lambda: nt.Lambda,
		State:       atfv1.TaskState_TASK_STATE_NEW,
		MaxAttempts: nt.MaxAttempts, Priority: nt.Priority,
		Key: nt.Key, Collection: nt.Collection, TraceParent: nt.TraceParent,
		ExecuteAt: nt.ExecuteAt.UTC(), CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
	}
	if len(nt.Payload) > 0 {
		t.Payload = nt.Payload
	}
	trigger, wake := ms(enqueueAt), wakeFor(now, enqueueAt)
	if dueNow {
		t.State, t.EnqueuedAt = atfv1.TaskState_TASK_STATE_ENQUEUED, t.CreatedAt
		trigger, wake = ms(now.Add(s.opts.EnqueueTimeout)), ""
	}

	// Attempt and token start unset (0), updated-at too (the creation).
	head := scheduleHead{
		ns: nt.Namespace, lam: nt.Lambda, st: strconv.Itoa(int(t.State)), max: strconv.Itoa(nt.MaxAttempts),
		queue: queue, trigger: trigger, wake: wake, keyed: nt.Key != "" || nt.Collection != "",
	}
	if dueNow {
		head.enqueuedAt = nowMS
	}
	return preparedTask{id: id, p: p, queue: queue, task: t, dueNow: dueNow, head: head,
		work: workBlob(nt.Priority, nt.ExecuteAt, now, nt.TraceParent, nt.Payload), key: nt.Key, col: nt.Collection}
}
