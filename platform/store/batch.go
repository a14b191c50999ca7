package store

import (
	"context"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/redis/go-redis/v9"
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
		var prev *preparedTask
		if i > 0 {
			prev = &pts[i-1]
		}
		pts[i] = s.prepare(nt, now, prev)
	}

	replies, err := s.storeTasks(ctx, pts)
	if err != nil {
		return nil, fmt.Errorf("store: schedule batch: %w", err)
	}
	out := make([]BatchResult, len(tasks))
	for i, pt := range pts {
		t, dup, err := scheduled(pt, replies[i])
		if err != nil {
			return nil, err
		}
		out[i] = BatchResult{Task: t, Deduplicated: dup}
	}
	return out, nil
}

// scheduled is the task a scheduleScript reply element stands for: the
// task as stored, or the kept task its key matched (dup).
func scheduled(pt preparedTask, reply any) (Task, bool, error) {
	d, ok := reply.([]any)
	if !ok || len(d) != 2 {
		return pt.task, false, nil
	}
	existing, _ := d[0].(string)
	fields, err := pairsToMap(d[1])
	if err != nil {
		return Task{}, false, err
	}
	t, err := decodeTask(existing, fields)
	return t, true, err
}

// storeTasks stores prepared tasks in order, one scheduleScript call per
// partition group (one on a standalone server), and pushes the due-now
// tasks stored to their queues, in order (RPOP takes the first first). It
// returns the script's reply element per task.
//
// On a standalone server, when no task has a key none can be
// deduplicated, so, once the server is known to have the script, the
// pushes ride in the script's round trip: the server runs the script
// before them. Otherwise they follow the script's reply — on a cluster the
// queues live on another node, which could take a push before the task's
// node stored the task, and a claim would drop the id (the task then
// waiting for its enqueue timeout). A push is never the caller's error:
// the task is stored, and a lost push is redone by the enqueue timeout.
func (s *Store) storeTasks(ctx context.Context, pts []preparedTask) ([]any, error) {
	groups := s.scriptGroups(len(pts), func(i int) int { return pts[i].p })
	calls := make([]scriptCall, len(groups))
	for g, idx := range groups {
		calls[g] = scriptCall{keys: []string{triggerKey(pts[idx[0]].p)}, args: scheduleArgs(pts, idx)}
	}
	keyed := false
	for _, pt := range pts {
		keyed = keyed || pt.key != ""
	}
	var cmds []*redis.Cmd
	pushed := false
	_, cluster := s.rdb.(*redis.ClusterClient)
	if !keyed && !cluster && s.scheduleLoaded.Load() {
		cmds = make([]*redis.Cmd, len(calls))
		pipe := s.rdb.Pipeline()
		for g, c := range calls {
			cmds[g] = scheduleScript.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		pushed = s.pushDue(ctx, pipe, pts, nil) > 0
		_, _ = pipe.Exec(ctx) // errors are per command
		for _, c := range cmds {
			if err := c.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				// The server lost the script (it restarted): run it the long
				// way and push again. A push made already may have been
				// popped and dropped, its task not stored yet; a second
				// entry for a task claimed meanwhile is skipped by the claim.
				s.scheduleLoaded.Store(false)
				cmds, pushed = nil, false
				break
			}
		}
	}
	if cmds == nil {
		var err error
		if cmds, err = s.runPipelined(ctx, scheduleScript, calls); err != nil {
			return nil, partialStore(cmds, err)
		}
		s.scheduleLoaded.Store(true)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return nil, partialStore(cmds, err)
		}
	}
	replies := make([]any, len(pts))
	for g, idx := range groups {
		res, ok := cmds[g].Val().([]any)
		if !ok || len(res) != len(idx) {
			return nil, fmt.Errorf("unexpected script reply %T", cmds[g].Val())
		}
		for j, i := range idx {
			replies[i] = res[j]
		}
	}
	if !pushed {
		pipe := s.rdb.Pipeline()
		if s.pushDue(ctx, pipe, pts, replies) > 0 {
			_, _ = pipe.Exec(ctx)
		}
	}
	return replies, nil
}

// pushDue queues on pipe the pushes of the due-now tasks among pts that
// were stored (replies[i] 0; nil replies: all), one LPUSH per queue with
// its ids in order, and returns how many LPUSHes it queued.
func (s *Store) pushDue(ctx context.Context, pipe redis.Pipeliner, pts []preparedTask, replies []any) int {
	push := map[string][]any{}
	var queues []string
	for i, pt := range pts {
		if !pt.dueNow {
			continue
		}
		if replies != nil {
			if _, stored := replies[i].(int64); !stored {
				continue
			}
		}
		if _, ok := push[pt.queue]; !ok {
			queues = append(queues, pt.queue)
		}
		push[pt.queue] = append(push[pt.queue], pt.id)
	}
	for _, q := range queues {
		pipe.LPush(ctx, q, push[q]...)
	}
	return len(queues)
}

// partialStore is the error of a scheduleScript pipeline: on a cluster,
// with how many partition shares were stored all the same.
func partialStore(cmds []*redis.Cmd, err error) error {
	if len(cmds) > 1 {
		stored := 0
		for _, c := range cmds {
			if c != nil && c.Err() == nil {
				stored++
			}
		}
		return fmt.Errorf("%d of %d partition shares stored (schedule again with keys to complete it safely): %w", stored, len(cmds), err)
	}
	return err
}

// checkNewTask is what the store itself refuses of a new task.
func checkNewTask(nt NewTask) error {
	if nt.Priority < 0 || nt.Priority > 9 {
		return errorf(ErrInvalid, "priority %d is out of range 0-9", nt.Priority)
	}
	if nt.Lambda == "" {
		return errorf(ErrInvalid, "task has no lambda")
	}
	if strings.IndexByte(nt.Lambda, 0) >= 0 {
		return errorf(ErrInvalid, "lambda name %q has a NUL byte", nt.Lambda)
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
	created, ns, lam, st, trigger, wake string
	keyed                               bool // the tasks carry key and collection
}

// runs yields the runs of consecutive indexes of idx whose key is the
// same: what a script's run header shares.
func runs[K comparable](idx []int, key func(i int) K) iter.Seq[[]int] {
	return func(yield func([]int) bool) {
		for j := 0; j < len(idx); {
			k := j + 1
			for k < len(idx) && key(idx[k]) == key(idx[j]) {
				k++
			}
			if !yield(idx[j:k]) {
				return
			}
			j = k
		}
	}
}

// scheduleArgs is scheduleScript's ARGV for the tasks pts[i], i in idx.
func scheduleArgs(pts []preparedTask, idx []int) []any {
	args := make([]any, 0, 8+2*len(idx))
	for run := range runs(idx, func(i int) scheduleHead { return pts[i].head }) {
		h := pts[run[0]].head
		keyed := "0"
		if h.keyed {
			keyed = "1"
		}
		args = append(args, len(run), h.created, h.ns, h.lam, h.st, h.trigger, h.wake, keyed)
		for _, i := range run {
			args = append(args, pts[i].id, pts[i].work)
			if h.keyed {
				args = append(args, pts[i].key, pts[i].col)
			}
		}
	}
	return args
}

// prepare lays out a checked new task: its id and partition, the task as
// it will be stored, and what scheduleScript takes of it. prev, when not
// nil, is the task prepared before it at the same now (a batch's): the
// strings they share are formatted once.
func (s *Store) prepare(nt NewTask, now time.Time, prev *preparedTask) preparedTask {
	if nt.MaxAttempts <= 0 {
		nt.MaxAttempts = DefaultMaxAttempts
	}
	now = now.Truncate(time.Millisecond) // as stored
	var nowMS string
	if prev != nil {
		nowMS = prev.head.created
	} else {
		nowMS = ms(now)
	}
	if nt.ExecuteAt.IsZero() {
		nt.ExecuteAt = now
	} else if r := nt.ExecuteAt.Truncate(time.Millisecond); !r.Equal(nt.ExecuteAt) {
		// Stored in whole milliseconds, rounded up: a task never starts early.
		nt.ExecuteAt = r.Add(time.Millisecond)
	}
	p := s.partitionFor(nt.Namespace, nt.Lambda, nt.Key)
	id := s.newID(p, now)
	var queue string
	if prev != nil && prev.task.Namespace == nt.Namespace && prev.task.Lambda == nt.Lambda && prev.task.Priority == nt.Priority {
		queue = prev.queue
	} else {
		queue = s.QueueKey(nt.Namespace, nt.Lambda, nt.Priority)
	}
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
	var trigger, wake string
	switch {
	case dueNow && prev != nil && prev.dueNow:
		trigger = prev.head.trigger
	case dueNow:
		trigger = ms(now.Add(s.opts.EnqueueTimeout))
	default:
		trigger, wake = ms(enqueueAt), wakeFor(now, enqueueAt)
	}
	if dueNow {
		t.State, t.EnqueuedAt = atfv1.TaskState_TASK_STATE_ENQUEUED, t.CreatedAt
	}

	// Attempt and token start unset (0), updated-at too (the creation),
	// enqueued-at too when enqueued now (work version 3).
	head := scheduleHead{
		created: nowMS, ns: nt.Namespace, lam: nt.Lambda, st: strconv.Itoa(int(t.State)),
		trigger: trigger, wake: wake, keyed: nt.Key != "" || nt.Collection != "",
	}
	return preparedTask{id: id, p: p, queue: queue, task: t, dueNow: dueNow, head: head,
		work: workBlob(nt.Lambda, nt.MaxAttempts, nt.Priority, nt.ExecuteAt, now, dueNow, nt.TraceParent, nt.Payload), key: nt.Key, col: nt.Collection}
}
