package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// Gating (ATF): pause, resume and drop a lambda or one collection of it.
//
// A pause is written twice: in the lambda's gate hash, which the API reads
// (Gate), and in every partition's gate hash, which the claim script reads.
// A task popped while its lambda or collection is paused is not claimed:
// claimScript parks it — NEW, marked "pk", out of the trigger set, in its
// partition's parked set of the lambda — so it spends no attempt and costs
// nothing while it waits: no trigger brings it back, no queue holds it.
// Resume clears the partition's gate and enqueues its parked tasks in one
// script per partition, so a task is never parked by a stale gate after
// its partition resumed. Drop cancels the waiting tasks it finds in the
// lambda's index sets, or, when that is fewer entries, in the trigger and
// parked sets.
//
// Keys (besides those of doc.go):
//
//	atf:{lam}:<ns>:gate:<name>      hash: "*" -> "1" when the lambda is
//	                                paused; "c:<collection>" -> "1" per
//	                                paused collection (kept across
//	                                DeleteLambda and redeploys)
//	atf:{p<P>}:gate                 hash: "<ns>:<lambda>" and
//	                                "<ns>:<lambda>:<collection>" -> "1"
//	atf:{p<P>}:parked:<ns>:<lambda> zset: parked task id -> parked (ms)
//
// Names and collections cannot hold ':' (the frontend's name rule), so the
// fields cannot collide.

// Gate is the pause state of a lambda.
type Gate struct {
	Paused      bool     // the whole lambda
	Collections []string // paused collections, sorted
}

func lambdaGateKey(ns, name string) string      { return "atf:{lam}:" + ns + ":gate:" + name }
func partGateKey(p int) string                  { return partPrefix(p) + "gate" }
func parkedKey(p int, ns, lambda string) string { return partPrefix(p) + "parked:" + ns + ":" + lambda }

// gateField is the field of a partition gate hash for a lambda, or for one
// collection of it.
func gateField(ns, lambda, collection string) string {
	if collection == "" {
		return ns + ":" + lambda
	}
	return ns + ":" + lambda + ":" + collection
}

func lambdaGateField(collection string) string {
	if collection == "" {
		return "*"
	}
	return "c:" + collection
}

// gateChunk is how many parked or indexed tasks one resume or drop script
// handles, so a big backlog never blocks Redis for long.
const gateChunk = 500

// Pause pauses a lambda (collection "") or one collection of it. Tasks
// already claimed run on; waiting ones are parked when next popped.
// Pausing twice is a no-op. ErrNotFound when the lambda does not exist.
func (s *Store) Pause(ctx context.Context, ns, name, collection string) error {
	if _, err := s.GetLambda(ctx, ns, name); err != nil {
		return err
	}
	// The lambda's gate first: a partial failure shows as paused, and
	// pausing again completes it.
	if err := s.rdb.HSet(ctx, lambdaGateKey(ns, name), lambdaGateField(collection), "1").Err(); err != nil {
		return fmt.Errorf("store: pause lambda %q: %w", name, err)
	}
	pipe := s.rdb.Pipeline()
	for p := range s.opts.Partitions {
		pipe.HSet(ctx, partGateKey(p), gateField(ns, name, collection), "1")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: pause lambda %q: %w", name, err)
	}
	return nil
}

// Resume lifts a pause of a lambda (collection "") or of one collection,
// and enqueues the tasks it parked (those still held by another pause —
// the lambda's, or their collection's — stay parked). It returns how many
// tasks it enqueued. Resuming what is not paused is a no-op. It works for
// a deleted lambda too, whose gates outlive it.
func (s *Store) Resume(ctx context.Context, ns, name, collection string) (int, error) {
	return s.ResumeFunc(ctx, ns, name, collection, nil)
}

// ResumeFunc is Resume telling fn, when not nil, of the tasks it enqueued:
// after each chunk's pushes, with the tasks the chunk pushed (From NEW),
// so that the caller can give each push a span in its task's
// trace. fn must not block; a chunk whose pushes failed is not told.
func (s *Store) ResumeFunc(ctx context.Context, ns, name, collection string, fn func(ctx context.Context, tasks []Enqueued)) (int, error) {
	now := s.now()
	field := gateField(ns, name, collection)
	total := 0
	// Partitions first: a partial failure leaves the lambda shown paused,
	// and resuming again completes it.
	for p := range s.opts.Partitions {
		anchor, anchorScore := "", ""
		for {
			res, err := resumeScript.Run(ctx, s.rdb,
				[]string{partGateKey(p), parkedKey(p, ns, name), triggerKey(p)},
				field, ms(now), ms(now.Add(s.opts.EnqueueTimeout)), partPrefix(p), anchor, anchorScore, gateChunk, gateField(ns, name, "")).Slice()
			if err != nil {
				return total, fmt.Errorf("store: resume lambda %q: %w", name, err)
			}
			if len(res) < 3 {
				return total, fmt.Errorf("store: resume lambda %q: script answered %d values", name, len(res))
			}
			scanned, _ := res[0].(int64)
			anchor, _ = res[1].(string)
			anchorScore, _ = res[2].(string)
			if len(res) > 3 {
				var told []Enqueued
				pipe := s.rdb.Pipeline()
				for i := 3; i+resumeStride <= len(res); i += resumeStride {
					q, _ := res[i].(string)
					id, _ := res[i+1].(string)
					pipe.LPush(ctx, q, id)
					total++
					if fn != nil {
						tp, _ := res[i+2].(string)
						told = append(told, Enqueued{TaskID: id, Lambda: name, TraceParent: traceParentOf(tp), From: atfv1.TaskState_TASK_STATE_NEW})
					}
				}
				// As for Schedule: the enqueue timeout redoes a lost push.
				if _, err := pipe.Exec(ctx); err == nil && len(told) > 0 {
					fn(ctx, told)
				}
			}
			if scanned < gateChunk {
				break
			}
		}
	}
	if err := s.rdb.HDel(ctx, lambdaGateKey(ns, name), lambdaGateField(collection)).Err(); err != nil {
		return total, fmt.Errorf("store: resume lambda %q: %w", name, err)
	}
	return total, nil
}

// resumeStride is the number of values resumeScript returns per push.
const resumeStride = 3

// Drop cancels every waiting task — NEW (parked ones too), ENQUEUED,
// RETRIABLE_FAILURE — of a lambda (collection "") or of one collection of
// it, and returns how many it cancelled. Running tasks finish. Tasks
// scheduled, or whose state or trigger changes, while Drop runs may or
// may not be cancelled; every other waiting task is.
//
// In each partition it reads the smaller of two sets of tasks: the
// lambda's index (every task of the lambda still kept, finished ones
// too), or the partition's trigger set (every live task of every lambda,
// but parked ones) and the lambda's parked set. A busy lambda has far
// more finished tasks than waiting ones: its drop reads the live tasks.
func (s *Store) Drop(ctx context.Context, ns, name, collection string) (int, error) {
	st, err := s.drop(ctx, ns, name, collection)
	return st.cancelled, err
}

// dropStats is what a drop did: the tasks it cancelled, and the set
// entries it looked at (its cost).
type dropStats struct {
	cancelled, looked int
}

func (s *Store) drop(ctx context.Context, ns, name, collection string) (dropStats, error) {
	now := s.now()
	var st dropStats
	for p := range s.opts.Partitions {
		idx, trig, parked := indexKey(p, ns, name), triggerKey(p), parkedKey(p, ns, name)
		pipe := s.rdb.Pipeline()
		nIdx, nTrig, nParked := pipe.ZCard(ctx, idx), pipe.ZCard(ctx, trig), pipe.ZCard(ctx, parked)
		if _, err := pipe.Exec(ctx); err != nil {
			return st, fmt.Errorf("store: drop tasks of lambda %q: %w", name, err)
		}
		sets := []string{idx}
		if nTrig.Val()+nParked.Val() < nIdx.Val() {
			sets = []string{trig, parked}
		}
		for _, set := range sets {
			if err := s.dropSet(ctx, now, p, set, ns, name, collection, &st); err != nil {
				return st, fmt.Errorf("store: drop tasks of lambda %q: %w", name, err)
			}
		}
	}
	return st, nil
}

// dropSet runs dropScript over one sorted set of partition p, a chunk at
// a time, from its first entry to its last.
func (s *Store) dropSet(ctx context.Context, now time.Time, p int, set, ns, name, collection string, st *dropStats) error {
	anchor, anchorScore := "", ""
	for {
		res, err := dropScript.Run(ctx, s.rdb,
			[]string{set, triggerKey(p), parkedKey(p, ns, name)},
			ns, name, collection, ms(now), partPrefix(p),
			anchor, anchorScore, gateChunk).Slice()
		if err != nil {
			return err
		}
		if len(res) != 4 {
			return fmt.Errorf("drop script answered %d values, want 4", len(res))
		}
		n, _ := res[0].(int64)
		looked, _ := res[1].(int64)
		anchor, _ = res[2].(string)
		anchorScore, _ = res[3].(string)
		st.cancelled += int(n)
		st.looked += int(looked)
		if looked < gateChunk {
			return nil
		}
	}
}

// Gate returns a lambda's pause state.
func (s *Store) Gate(ctx context.Context, ns, name string) (Gate, error) {
	fields, err := s.rdb.HKeys(ctx, lambdaGateKey(ns, name)).Result()
	if err != nil {
		return Gate{}, fmt.Errorf("store: read gate of lambda %q: %w", name, err)
	}
	return gateOf(fields), nil
}

// gateOf reads the fields of a lambda's gate hash.
func gateOf(fields []string) Gate {
	var g Gate
	for _, f := range fields {
		if f == "*" {
			g.Paused = true
		} else if col, ok := strings.CutPrefix(f, "c:"); ok {
			g.Collections = append(g.Collections, col)
		}
	}
	slices.Sort(g.Collections)
	return g
}

// luaPark is the part of claimScript that parks a task of a paused lambda
// or collection instead of claiming it. gated[prefix] tells whether the
// partition has a gate at all: one EXISTS, on its first use in a script
// call (as luaPrefixes, a table whose __index fills it; nothing else runs
// meanwhile); only then does park(prefix, id, now) read the task and the
// gates.
const luaPark = `
local gated = setmetatable({}, {__index = function(t, prefix)
  local g = redis.call("EXISTS", prefix .. "gate") == 1
  t[prefix] = g
  return g
end})
local function park(prefix, id, now)
  local tkey, gate = prefix .. "task:" .. id, prefix .. "gate"
  local v = redis.call("HMGET", tkey, "ns", "lam", "col", "w")
  v[1], v[2] = v[1] or DEFAULT_NS, lam_max(v[4], v[2])
  local lk = v[1] .. ":" .. v[2]
  local g = redis.call("HMGET", gate, lk, lk .. ":" .. (v[3] or ""))
  if not g[1] and not (v[3] and g[2]) then
    return false
  end
  redis.call("HSET", tkey, "st", NEW, "pk", "1", "ua", now)
  redis.call("ZREM", prefix .. "trigger", id)
  redis.call("ZADD", prefix .. "parked:" .. lk, now, id)
  return true
end
`

// resumeScript lifts one gate of a partition and enqueues a chunk of the
// lambda's parked tasks that no other gate holds. Chunks go on after an
// anchor, the last entry kept parked so far (luaAfter): a rank would skip
// entries when a Drop or a Cancel removes parked tasks meanwhile, and a
// task skipped would stay parked with no gate left to lift.
//
// KEYS[1] partition gate hash
// KEYS[2] the lambda's parked zset in the partition
// KEYS[3] partition trigger zset
// ARGV[1] gate field to clear
// ARGV[2] now (ms)
// ARGV[3] enqueue deadline: now + enqueue timeout (ms)
// ARGV[4] partition key prefix
// ARGV[5] anchor: the member after which to go on, "" from the start
// ARGV[6] the anchor's score when it was read
// ARGV[7] at most this many
// ARGV[8] the lambda's gate field ("<ns>:<lambda>")
//
// Returns {looked at, anchor, anchor's score, then queue, id, traceparent
// per push the caller makes}.
var resumeScript = redis.NewScript(luaPrelude + luaAfter + `
redis.call("HDEL", KEYS[1], ARGV[1])
local lamPaused = redis.call("HEXISTS", KEYS[1], ARGV[8]) == 1
local start = after(KEYS[2], ARGV[5], ARGV[6])
local entries = redis.call("ZRANGE", KEYS[2], start, start + tonumber(ARGV[7]) - 1, "WITHSCORES")
local res = {#entries / 2, ARGV[5], ARGV[6]}
for i = 1, #entries, 2 do
  local id = entries[i]
  local tkey = ARGV[4] .. "task:" .. id
  local v = redis.call("HMGET", tkey, "st", "pk", "col", "q", "w", "ns")
  v[4] = queue_of(v[4], v[6] or DEFAULT_NS, v[5])
  if v[1] ~= NEW or v[2] ~= "1" then
    -- cancelled, dropped or expired since it was parked
    redis.call("ZREM", KEYS[2], id)
  elseif lamPaused or (v[3] and redis.call("HEXISTS", KEYS[1], ARGV[8] .. ":" .. v[3]) == 1) then
    res[2], res[3] = id, entries[i + 1]
  else
    redis.call("ZREM", KEYS[2], id)
    redis.call("HDEL", tkey, "pk")
    redis.call("HSET", tkey, "st", ENQUEUED, "ea", ARGV[2], "ua", ARGV[2], "rq", ARGV[2])
    redis.call("ZADD", KEYS[3], ARGV[3], id)
    res[#res + 1] = v[4]
    res[#res + 1] = id
    res[#res + 1] = v[5] or redis.call("HGET", tkey, "tp") or "" -- as in processDueScript
  end
end
return res
`)

// luaAfter is the rank at which a chunk of a sorted set goes on after an
// anchor, the last entry of the previous chunk that stayed in the set:
// the rank after the anchor's while it keeps the score it had. An anchor
// gone or moved makes the chunk start at the first entry of its old
// score, which may read entries again (harmless) and never skips one that
// stayed.
const luaAfter = `
local function after(zkey, anchor, anchorScore)
  if anchor == "" then
    return 0
  end
  local sc = redis.call("ZSCORE", zkey, anchor)
  if sc and tonumber(sc) == tonumber(anchorScore) then
    return redis.call("ZRANK", zkey, anchor) + 1
  end
  return redis.call("ZCOUNT", zkey, "-inf", "(" .. anchorScore)
end
`

// dropScript cancels the waiting tasks of the lambda among a chunk of
// entries of a sorted set of one partition: the lambda's index, the
// partition's trigger set or the lambda's parked set.
//
// A chunk goes on after the anchor, the last entry of the previous chunk
// the script left in the set: it starts at the rank after the anchor's
// while the anchor keeps its score. Cancelled tasks leave the trigger and
// parked sets, and other tasks move in the trigger set all the time (a
// claim, a heartbeat, the consumer), so a rank alone would skip entries.
// An anchor gone or moved makes the chunk start at the first entry of its
// old score, which may read entries again (harmless), never skips one
// that stayed. Entries that move from after the anchor to before it are
// skipped: tasks that change while Drop runs.
//
// KEYS[1] the sorted set to read
// KEYS[2] partition trigger zset
// KEYS[3] the lambda's parked zset in the partition
// ARGV[1] namespace
// ARGV[2] lambda
// ARGV[3] collection, "" for all
// ARGV[4] now (ms)
// ARGV[5] partition key prefix
// ARGV[6] anchor: the member after which to go on, "" from the start
// ARGV[7] the anchor's score when it was read
// ARGV[8] at most this many entries
//
// Returns {cancelled, looked at, anchor, anchor's score}: the anchor for
// the next chunk ("" from the start).
var dropScript = redis.NewScript(luaPrelude + luaAfter + `
local anchor, anchorScore = ARGV[6], ARGV[7]
local start = after(KEYS[1], anchor, anchorScore)
local entries = redis.call("ZRANGE", KEYS[1], start, start + tonumber(ARGV[8]) - 1, "WITHSCORES")
-- the index keeps cancelled tasks; the trigger and parked sets lose them
local keeps = KEYS[1] ~= KEYS[2] and KEYS[1] ~= KEYS[3]
local n = 0
for i = 1, #entries, 2 do
  local id = entries[i]
  local tkey = ARGV[5] .. "task:" .. id
  local v = redis.call("HMGET", tkey, "st", "col", "ns", "lam", "w")
  v[3], v[4] = v[3] or DEFAULT_NS, lam_max(v[5], v[4])
  local st = v[1]
  local drop = (st == NEW or st == ENQUEUED or st == RETRIABLE) and v[3] == ARGV[1] and v[4] == ARGV[2]
    and (ARGV[3] == "" or v[2] == ARGV[3])
  if drop then
    redis.call("HSET", tkey, "st", CANCELLED, "ua", ARGV[4])
    redis.call("HDEL", tkey, "pk")
    finish(tkey, KEYS[2], id, ARGV[4])
    redis.call("ZREM", KEYS[3], id)
    n = n + 1
  end
  if keeps or not drop then
    anchor, anchorScore = id, entries[i + 1]
  end
end
return {n, #entries / 2, anchor, anchorScore}
`)
