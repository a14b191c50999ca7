package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The queues of DESIGN.md: one Redis list per (lambda, priority), all in
// the {q} slot so that one script or one BRPOP can read several. Beside
// them, per lambda with a max_concurrency, a running set (task id -> when
// its slot frees by itself) that Pop fills and Release empties; and per
// controller a control list that wakes its blocked pops.

// Popped is one task id taken from a queue.
type Popped struct {
	Queue  string
	TaskID string
}

// PopLambda is one lambda's queues as Pop reads them.
type PopLambda struct {
	// Queues, highest priority first.
	Queues []string
	// Running is the lambda's running set (RunningKey).
	Running string
	// Cap is the lambda's max_concurrency; 0 means no cap.
	Cap int
	// Lease is how long a popped task holds its slot if nobody releases it
	// (an executor that died): the claim timeout plus the lambda's timeout
	// plus the heartbeat timeout bounds any one execution.
	Lease time.Duration
}

// RunningKey is the running set of a lambda.
func (s *Store) RunningKey(ns, lambda string) string { return "atf:{q}:running:" + ns + ":" + lambda }

// ControlKey is the control list of one controller: a token pushed there
// ends its blocked pops (the set of queues changed).
func (s *Store) ControlKey(owner string) string { return "atf:{q}:ctl:" + owner }

// capWait is how long a pop blocks while a lambda at its cap has a
// backlog: a slot frees without a signal to the controller, so it looks
// again soon.
const capWait = 20 * time.Millisecond

// Pop takes up to max task ids from the lambdas' queues. Lambdas with
// tasks ready share max equally (what one cannot use goes to the others),
// so that one lambda's backlog never shadows another's; within a lambda
// the highest-priority queue is drained before the next. A lambda at its cap gives no task. When nothing is
// ready, Pop blocks up to wait (BRPOP) on the queues of lambdas below
// their cap and on control, if given; a token on control ends the wait
// with nothing. It returns an empty slice when nothing came.
func (s *Store) Pop(ctx context.Context, lambdas []PopLambda, max int, wait time.Duration, control string) ([]Popped, error) {
	if len(lambdas) == 0 || max <= 0 {
		return []Popped{}, nil
	}
	now := s.now().UnixMilli()
	keys := make([]string, 0, len(lambdas)*11)
	args := make([]any, 0, 3+len(lambdas)*3)
	args = append(args, max, now, len(lambdas))
	for _, l := range lambdas {
		keys = append(keys, l.Running)
		keys = append(keys, l.Queues...)
		args = append(args, len(l.Queues), l.Cap, l.Lease.Milliseconds())
	}
	res, err := popScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("store: pop: %w", err)
	}
	out := make([]Popped, 0, max)
	if len(res) == 3 {
		flat, _ := res[2].([]any)
		for i := 0; i+1 < len(flat); {
			q, _ := flat[i].(string)
			n, _ := flat[i+1].(int64)
			i += 2
			for ; n > 0 && i < len(flat); n-- {
				id, _ := flat[i].(string)
				out = append(out, Popped{Queue: q, TaskID: id})
				i++
			}
		}
	}
	if len(out) > 0 || wait <= 0 {
		return out, nil
	}

	// Nothing ready: block on the queues of lambdas below their cap.
	backlogAtCap, _ := res[0].(int64)
	capped := map[int]bool{}
	if list, ok := res[1].([]any); ok {
		for _, v := range list {
			i, _ := v.(int64)
			capped[int(i)-1] = true
		}
	}
	if backlogAtCap == 1 {
		wait = min(wait, capWait)
	}
	block := make([]string, 0, len(keys)+1)
	if control != "" {
		block = append(block, control)
	}
	owner := map[string]int{}
	for i, l := range lambdas {
		if capped[i] {
			continue
		}
		for _, q := range l.Queues {
			block = append(block, q)
			owner[q] = i
		}
	}
	if len(block) == 0 {
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(wait):
			return out, nil
		}
	}
	// A burst arriving at empty queues is taken whole (up to max) by the
	// one blocked pop it wakes, rather than one task per round trip. Only
	// when no lambda blocked on has a cap: a capped lambda's tasks are
	// admitted to their slots one by one.
	count := max
	for i, l := range lambdas {
		if !capped[i] && l.Cap > 0 {
			count = 1
		}
	}
	q, ids, err := s.blockingPop(ctx, block, wait, count)
	if err != nil || len(ids) == 0 {
		return out, err
	}
	if q == control {
		// Tokens for other blocked pops: give them back.
		if len(ids) > 1 {
			if err := s.Interrupt(ctx, control, len(ids)-1); err != nil {
				return out, err
			}
		}
		return out, nil
	}
	l := lambdas[owner[q]]
	if l.Cap > 0 {
		ok, err := admitScript.Run(ctx, s.rdb, []string{l.Running, q}, ids[0], l.Cap, s.now().UnixMilli(), l.Lease.Milliseconds()).Int()
		if err != nil {
			return out, fmt.Errorf("store: pop: admit: %w", err)
		}
		if ok == 0 { // the lambda reached its cap meanwhile: back to the head
			return out, nil
		}
	}
	for _, id := range ids {
		out = append(out, Popped{Queue: q, TaskID: id})
	}
	return out, nil
}

// blockingPop blocks up to wait for the first of keys to hold an element
// and pops up to count of them from its tail (BLMPOP, Redis 7), or one
// (BRPOP) where BLMPOP is missing. It returns the key and the elements,
// none when nothing came.
func (s *Store) blockingPop(ctx context.Context, keys []string, wait time.Duration, count int) (string, []string, error) {
	if count <= 1 || s.noBLMPOP.Load() {
		got, err := s.brpop(ctx, keys, wait)
		if err != nil || got == nil {
			return "", nil, err
		}
		return got[0], got[1:], nil
	}
	var (
		key  string
		vals []string
		err  error
	)
	if wait < time.Second {
		args := make([]any, 0, len(keys)+6)
		args = append(args, "blmpop", blockSeconds(wait), len(keys))
		for _, k := range keys {
			args = append(args, k)
		}
		args = append(args, "right", "count", count)
		var res []any
		res, err = s.rdb.Do(ctx, args...).Slice()
		if err == nil && len(res) == 2 {
			key, _ = res[0].(string)
			elems, _ := res[1].([]any)
			for _, e := range elems {
				if v, ok := e.(string); ok {
					vals = append(vals, v)
				}
			}
		}
	} else {
		// go-redis gives blocking commands a read timeout of whole seconds.
		key, vals, err = s.rdb.BLMPop(ctx, wait.Round(time.Second), "right", int64(count), keys...).Result()
	}
	if errors.Is(err, redis.Nil) {
		return "", nil, nil
	}
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "unknown command") {
		s.noBLMPOP.Store(true)
		return s.blockingPop(ctx, keys, wait, 1)
	}
	if err != nil {
		return "", nil, fmt.Errorf("store: pop: %w", err)
	}
	return key, vals, nil
}

// brpop blocks up to wait on keys; nil when nothing came.
func (s *Store) brpop(ctx context.Context, keys []string, wait time.Duration) ([]string, error) {
	var (
		res []string
		err error
	)
	if wait < time.Second {
		args := make([]any, 0, len(keys)+2)
		args = append(args, "brpop")
		for _, k := range keys {
			args = append(args, k)
		}
		args = append(args, blockSeconds(wait))
		res, err = s.rdb.Do(ctx, args...).StringSlice()
	} else {
		// go-redis gives blocking commands a read timeout of whole seconds.
		res, err = s.rdb.BRPop(ctx, wait.Round(time.Second), keys...).Result()
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: pop: %w", err)
	}
	if len(res) != 2 {
		return nil, nil
	}
	return res, nil
}

// Release frees the concurrency slots of tasks that are no longer
// running (or were popped but not claimed).
func (s *Store) Release(ctx context.Context, running string, ids ...string) error {
	if running == "" || len(ids) == 0 {
		return nil
	}
	members := make([]any, len(ids))
	for i, id := range ids {
		members[i] = id
	}
	if err := s.rdb.ZRem(ctx, running, members...).Err(); err != nil {
		return fmt.Errorf("store: release: %w", err)
	}
	return nil
}

// Interrupt pushes n tokens to a controller's control list, ending up to n
// of its blocked pops.
func (s *Store) Interrupt(ctx context.Context, control string, n int) error {
	if n <= 0 {
		return nil
	}
	tokens := make([]any, n)
	for i := range tokens {
		tokens[i] = "wake"
	}
	pipe := s.rdb.Pipeline()
	pipe.LPush(ctx, control, tokens...)
	pipe.PExpire(ctx, control, time.Minute)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: interrupt: %w", err)
	}
	return nil
}

// Running reports how many slots of a lambda's cap are taken.
func (s *Store) Running(ctx context.Context, running string) (int, error) {
	n, err := s.rdb.ZCount(ctx, running, "("+strconv.FormatInt(s.now().UnixMilli(), 10), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("store: running: %w", err)
	}
	return int(n), nil
}

// popScript pops without blocking: lambdas share what is asked for
// equally, each draining its queues highest priority first; a lambda at
// its cap gives nothing.
//
// KEYS     per lambda: its running set, then its queues (highest first)
// ARGV[1]  at most this many ids
// ARGV[2]  now (ms)
// ARGV[3]  number of lambdas
// ARGV[4…] per lambda: number of queues, cap (0: none), slot lease (ms)
//
// Returns {backlog_at_cap (0|1), {capped lambda indexes, 1-based},
// {queue, n, n ids, queue, n, n ids, …}}: a queue named once for the ids
// one RPOP took from it (each element of a reply costs redis-server a
// conversion and the client a parse).
var popScript = redis.NewScript(`
local max = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local nl = tonumber(ARGV[3])
local L = {}
local ki, ai = 1, 4
for i = 1, nl do
  local nq, cap, lease = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2])
  ai = ai + 3
  local l = {run = KEYS[ki], qs = {}, cap = cap, lease = lease, free = -1, done = false}
  for j = 1, nq do l.qs[j] = KEYS[ki + j] end
  ki = ki + nq + 1
  if cap > 0 then
    redis.call("ZREMRANGEBYSCORE", l.run, "-inf", now)
    l.free = cap - redis.call("ZCARD", l.run)
    if l.free < 0 then l.free = 0 end
  end
  L[i] = l
end
local out, capped, backlog = {}, {}, 0
-- Rounds: each lambda still active takes up to an equal share of what is
-- left (fewer if it has fewer ready or free slots), draining its queues
-- highest first with one RPOP <count> per queue; what one lambda leaves
-- goes to the others in the next round.
while max > 0 do
  local active = 0
  for i = 1, nl do
    if not L[i].done then active = active + 1 end
  end
  if active == 0 then break end
  local share = math.ceil(max / active)
  for i = 1, nl do
    local l = L[i]
    if max > 0 and not l.done then
      if l.free == 0 then
        l.done = true
        capped[#capped + 1] = i
        for _, q in ipairs(l.qs) do
          if redis.call("LLEN", q) > 0 then backlog = 1 break end
        end
      else
        local want = math.min(share, max)
        if l.free > 0 then want = math.min(want, l.free) end
        local took = 0
        for _, q in ipairs(l.qs) do
          local ids = redis.call("RPOP", q, want - took)
          if ids then
            out[#out + 1] = q
            out[#out + 1] = #ids
            for _, id in ipairs(ids) do
              out[#out + 1] = id
              if l.cap > 0 then
                redis.call("ZADD", l.run, now + l.lease, id)
              end
            end
            took = took + #ids
            if took == want then break end
          end
        end
        max = max - took
        if l.free > 0 then l.free = l.free - took end
        -- fewer than wanted: every queue of the lambda is empty now
        if took < want then l.done = true end
      end
    end
  end
end
return {backlog, capped, out}
`)

// admitScript takes a slot for a task BRPOP gave, or puts the task back at
// the head of its queue when the lambda is at its cap.
//
// KEYS[1] running set
// KEYS[2] the queue the task came from
// ARGV[1] task id
// ARGV[2] cap
// ARGV[3] now (ms)
// ARGV[4] slot lease (ms)
//
// Returns 1 when admitted, 0 when put back.
var admitScript = redis.NewScript(`
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[3])
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call("RPUSH", KEYS[2], ARGV[1])
  return 0
end
redis.call("ZADD", KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
return 1
`)

// blockSeconds is a sub-second blocking timeout as Redis takes it
// (seconds, millisecond precision); go-redis's typed blocking commands
// would round it to whole seconds.
func blockSeconds(wait time.Duration) string {
	return strconv.FormatFloat(max(wait.Seconds(), 0.001), 'f', 3, 64)
}
