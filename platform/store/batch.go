package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

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
	calls := make([]scriptCall, len(groups))
	for g, idx := range groups {
		nk, na := 0, 1
		for _, i := range idx {
			nk, na = nk+len(pts[i].keys), na+2+len(pts[i].args)
		}
		c := scriptCall{keys: make([]string, 0, nk), args: make([]any, 0, na)}
		c.args = append(c.args, len(idx))
		for _, i := range idx {
			pt := pts[i]
			c.keys = append(c.keys, pt.keys...)
			c.args = append(c.args, len(pt.keys), len(pt.args))
			c.args = append(c.args, pt.args...)
		}
		calls[g] = c
	}
	cmds, err := s.runPipelined(ctx, scheduleBatchScript, calls)
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
	keys   []string
	args   []any
	dueNow bool
}

// prepare lays out a checked new task: its id and partition, the task as
// it will be stored, and the KEYS and ARGV of scheduleScript.
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

	keys := []string{taskKey(p, id), triggerKey(p), indexKey(p, nt.Namespace, nt.Lambda)}
	if nt.Key != "" {
		keys = append(keys, dedupKey(p, nt.Namespace, nt.Lambda, nt.Key))
	}
	// Attempt and token start unset (0), updated-at too (the creation).
	args := make([]any, 0, 6+2*9)
	args = append(args, id, partPrefix(p), trigger, nowMS, wake, p,
		fNamespace, nt.Namespace,
		fLambda, nt.Lambda,
		fState, strconv.Itoa(int(t.State)),
		fMaxAttempts, strconv.Itoa(nt.MaxAttempts),
		fQueue, queue,
		fWork, workBlob(nt.Priority, nt.ExecuteAt, now, nt.TraceParent, nt.Payload))
	if dueNow {
		args = append(args, fEnqueuedAt, nowMS)
	}
	for _, fv := range [...]struct{ f, v string }{{fKey, nt.Key}, {fCollection, nt.Collection}} {
		if fv.v != "" {
			args = append(args, fv.f, fv.v)
		}
	}
	return preparedTask{id: id, p: p, queue: queue, task: t, keys: keys, args: args, dueNow: dueNow}
}

// scheduleBatchScript is scheduleScript for many tasks at once, in order:
// a task's key can deduplicate against a task earlier in the batch.
//
// KEYS    per task: task hash, trigger zset, index zset, and the key -> id
//
//	mapping when the task has a key (scheduleScript's KEYS)
//
// ARGV[1] number of tasks
// ARGV... per task: its number of KEYS, its number of ARGV, then its ARGV
//
//	as scheduleScript takes them
//
// Returns one entry per task: 0 when stored, {existing id, {existing task
// hash}} when its key matched a task still kept.
var scheduleBatchScript = redis.NewScript(luaPrelude + `
local n = tonumber(ARGV[1])
local ki, ai = 1, 2
local out = {}
for i = 1, n do
  local nk, na = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1])
  ai = ai + 2
  local tkey, zkey, ikey = KEYS[ki], KEYS[ki + 1], KEYS[ki + 2]
  local dkey = false
  if nk == 4 then dkey = KEYS[ki + 3] end
  ki = ki + nk
  local id, prefix, trig, created, wake, part =
    ARGV[ai], ARGV[ai + 1], ARGV[ai + 2], ARGV[ai + 3], ARGV[ai + 4], ARGV[ai + 5]
  local res = 0
  if dkey then
    local existing = redis.call("GET", dkey)
    if existing then
      local fields = redis.call("HGETALL", prefix .. "task:" .. existing)
      if #fields > 0 then
        res = {existing, fields}
      end
    end
  end
  if res == 0 then
    redis.call("HSET", tkey, unpack(ARGV, ai + 6, ai + na - 1))
    set_trigger(zkey, id, trig, wake, part)
    redis.call("ZADD", ikey, created, id)
    if dkey then
      redis.call("SET", dkey, id)
    end
  end
  out[i] = res
  ai = ai + na
end
return out
`)
