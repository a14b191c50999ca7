package store

import "github.com/redis/go-redis/v9"

// Every change of a task is one of the scripts below, run over the keys of
// the task's partition (all named with the {p<P>} hash tag). Scripts build
// other keys of the same partition from the prefix they are given (the
// task hash of a deduplicated key, the key -> id mapping of a finished
// task): these share the slot, so Redis Cluster accepts them.
//
// Scripts never call TIME: the caller passes "now" and every deadline in
// unix milliseconds, so tests drive the clock. They stick to Lua 5.1 and
// redis.call, and run unchanged on redis-server and miniredis.
//
// Task hash fields (see the f* constants in codec.go):
//
//	ns lv st att key col w ea sa fa ua ra hb pg err out otr dur tok cr
//	pk rq xs
//
// and, in tasks stored by earlier versions: lam max q (before work field
// version 2), pri pl xa ca tp (before any work field).

// luaPrelude holds the constants and helpers every task script shares. It
// is part of each script's text.
const luaPrelude = `
local NEW, ENQUEUED, CLAIMED, PROCESSING = "1", "2", "3", "4"
-- a task of it has no "ns" field (Store.DefaultNamespace)
local DEFAULT_NS = "` + DefaultNamespace + `"
local RETRIABLE, SUCCESS, FATAL, CANCELLED = "5", "6", "7", "8"

-- Number to string, on the hot paths: redis.call formats a Lua number
-- argument with "%.17g" and Lua's own conversion (tostring, "p" .. n) uses
-- "%.14g", each ~2k redis-server instructions of printf's floating point;
-- fmt("%d", n) takes printf's integer path. The hot scripts also keep the
-- key prefix of each partition they meet (luaPrefixes) rather than
-- building it per task.
local fmt = string.format

-- set (or move) a task's next trigger; when it becomes the partition's
-- earliest, tell sleeping consumers on the wake channel ("<P> <ms>").
local function set_trigger(zkey, id, at, wake, part)
  if wake == "" then
    redis.call("ZADD", zkey, at, id)
    return
  end
  local first = redis.call("ZRANGE", zkey, 0, 0, "WITHSCORES")
  redis.call("ZADD", zkey, at, id)
  if first[2] == nil or tonumber(at) < tonumber(first[2]) then
    redis.call("PUBLISH", wake, part .. " " .. at)
  end
end

-- a task reached a terminal state: its finish time, and no trigger (zkey
-- false: the caller removes it). It is kept for the retention: the trim
-- (trimScript) deletes it and its key mapping once that has run out since
-- "fa" — no TTL, whose PEXPIRE cost the hot path ~13k instructions a task.
local function finish(tkey, zkey, id, now)
  redis.call("HSET", tkey, "fa", now)
  if zkey then
    redis.call("ZREM", zkey, id)
  end
end

-- the head of a task's work field ("w", version 2 or 3: "\2" lambda "\0"
-- max "\0" priority ..., workBlob): its lambda, max attempts and priority
-- (a number); nothing for a task stored by an earlier version, which
-- keeps them in fields ("lam", "max", "pri" or inside "q").
local function work_head(w)
  local v = w and string.byte(w, 1)
  if v == 2 or v == 3 then
    local a = string.find(w, "\0", 2, true)
    local b = string.find(w, "\0", a + 1, true)
    return string.sub(w, 2, a - 1), string.sub(w, a + 1, b - 1), string.byte(w, b + 1)
  end
end

-- a task's lambda and max attempts: from its work field's head, or the
-- fields "lam" and "max" of a task stored by an earlier version (given).
local function lam_max(w, lam, max)
  local hl, hm = work_head(w)
  if hl then
    return hl, hm
  end
  return lam, max
end

-- the queue a task is pushed to: the twin of Store.QueueKey; the field
-- "q" of a task stored by an earlier version (given) holds it.
local function queue_of(q, ns, w)
  local hl, _, hp = work_head(w)
  if hl then
    return "atf:{q}:" .. ns .. ":" .. hl .. ":" .. hp
  end
  return q
end

local function varint(n)
  local s = ""
  while n >= 128 do
    s = s .. string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  return s .. string.char(n)
end

-- an encoded atf.v1.TaskError with its attempt field (6) set: appending a
-- field to a proto message overrides an earlier value of it.
local function with_attempt(blob, attempt)
  if blob == "" then return "" end
  return blob .. "\48" .. varint(attempt)
end
`

// luaPrefixes is the key prefix of the partition a task id names, by the
// id's first two hex digits: built once per partition and script call (a
// cache miss runs __index), a table lookup for every other task — the
// twin of Go's partPrefix.
const luaPrefixes = `
local prefixes = setmetatable({}, {__index = function(t, hh)
  local p = "atf:{p" .. tonumber(hh, 16) .. "}:"
  t[hh] = p
  return p
end})
`

// luaLater gathers sorted-set changes of a script's tasks to make them
// at its end, one command per set: a redis.call costs ~5k instructions of
// glue whatever its arguments, and a batch's tasks share a partition's
// sets. later(set, member) for ZREM, later(set, score, member) for ZADD.
const luaLater = `
local later_sets, later_args = {}, {}
-- the arguments gathered for a set (a script may append to them itself)
local function later_of(zkey)
  local args = later_args[zkey]
  if not args then
    args = {}
    later_args[zkey] = args
    later_sets[#later_sets + 1] = zkey
  end
  return args
end
local function later(zkey, a, b)
  local args = later_of(zkey)
  args[#args + 1] = a
  if b then
    args[#args + 1] = b
  end
end
local function flush_later(cmd)
  for _, zkey in ipairs(later_sets) do
    local args = later_args[zkey]
    if #args > 0 then
      redis.call(cmd, zkey, unpack(args))
    end
  end
end
`

// scheduleScript stores new tasks, in order (a task's key can deduplicate
// against a task earlier in the same call), or finds the task still kept
// that already holds a task's key. ScheduleBatch sends a batch in one call
// (on Redis Cluster, one call per partition), Schedule a batch of one.
//
// Consecutive tasks that share their lambda and timing share one run
// header, so that a task costs its id and work field: every argument costs
// redis-server ~1k instructions (parsing, the ARGV table, freeing), more
// than building the task's keys here does.
//
// KEYS[1] the trigger zset of the first task's partition (it routes the
// call on a cluster; every key is built from the task ids, whose first
// two hex digits name their partition)
// ARGV    runs of tasks, each: its number of tasks, then created (ms),
// namespace, lambda, state, next trigger (ms), wake channel ("" when none
// is needed), "1" when its tasks carry key and collection; then per task:
// id, work field (workBlob: it holds the lambda and max attempts too, and
// tells a task enqueued now) and, with that "1", key and collection (""
// for none). A task of the default namespace gets no namespace field.
//
// The sorted-set entries of a call (index, and triggers that need no
// wake-up) are added together at its end, one ZADD per set.
//
// Returns one element per task: 0 when stored, {existing id, {existing
// task hash}} when its key maps to a task that still exists.
var scheduleScript = redis.NewScript(luaPrelude + luaLater + luaPrefixes + `
local out, triggers = {}, {}
local a = 1
while a <= #ARGV do
  local c = tonumber(ARGV[a])
  local created, ns, lam, st, trig, wake, kc = unpack(ARGV, a + 1, a + 7)
  a = a + 8
  -- the fields beside state and work: none, the commonest case, or these
  local f0 = {}
  if ns ~= DEFAULT_NS then
    f0 = {"ns", ns}
  end
  local plain = #f0 == 0 and kc ~= "1"
  local index = {} -- the run's index entries, by partition
  for _ = 1, c do
    local id, w, key, col = ARGV[a], ARGV[a + 1], "", ""
    if kc == "1" then
      key, col = ARGV[a + 2], ARGV[a + 3]
      a = a + 4
    else
      a = a + 2
    end
    local hh = string.sub(id, 1, 2)
    local prefix = prefixes[hh]
    local res = 0
    local dkey = false
    if key ~= "" then
      dkey = prefix .. "key:" .. ns .. ":" .. lam .. ":" .. key
      local existing = redis.call("GET", dkey)
      if existing then
        local fields = redis.call("HGETALL", prefix .. "task:" .. existing)
        if #fields > 0 then
          res = {existing, fields}
        end
      end
    end
    if res == 0 then
      local tkey = prefix .. "task:" .. id
      if plain then
        redis.call("HSET", tkey, "st", st, "w", w)
      else
        local f = {"st", st, "w", w, unpack(f0)}
        if key ~= "" then
          f[#f + 1], f[#f + 2] = "key", key
        end
        if col ~= "" then
          f[#f + 1], f[#f + 2] = "col", col
        end
        redis.call("HSET", tkey, unpack(f))
      end
      if wake == "" then
        local ta = triggers[hh]
        if not ta then
          ta = later_of(prefix .. "trigger")
          triggers[hh] = ta
        end
        ta[#ta + 1], ta[#ta + 2] = trig, id
      else
        set_trigger(prefix .. "trigger", id, trig, wake, tonumber(hh, 16))
      end
      local ia = index[hh]
      if not ia then
        ia = later_of(prefix .. "idx:" .. ns .. ":" .. lam)
        index[hh] = ia
      end
      ia[#ia + 1], ia[#ia + 2] = created, id
      if dkey then
        redis.call("SET", dkey, id)
      end
    end
    out[#out + 1] = res
  end
end
flush_later("ZADD")
return out
`)

// claimScript moves popped ENQUEUED tasks to CLAIMED, each with a fresh
// fencing token: a batch of them in one call (on Redis Cluster, of one
// partition; the caller groups them). One call for a batch rather than one
// per task saves redis-server the fixed cost of a script call (~14k
// instructions: parsing, the KEYS and ARGV tables, the reply, the AOF's
// MULTI/EXEC) and, per partition, the pause check's EXISTS.
//
// KEYS[1] the trigger zset of the first task's partition (it routes the
// call on a cluster; every key is built from the task ids, whose first
// two hex digits name their partition)
// ARGV[1] now (ms)
// ARGV[2] claim deadline: now + claim timeout (ms)
// ARGV[3] wake channel
// ARGV[4] enqueue timeout (ms)
// ARGV[5...] runs of tasks that the claimer runs with one lambda version:
// the version, the number of tasks, their ids
//
// A task's trigger stays where its enqueue put it (enqueued + enqueue
// timeout) when that comes no later than the claim deadline — with an
// enqueue timeout no longer than the claim's (the defaults), always: processDueScript then finds the claim alive (updated + claim
// timeout) and moves the trigger to its deadline. Nearly every task is
// finished before, and never pays for a move.
//
// Returns, per task in order and in one flat list (a nested list per task
// costs redis-server a table and an array header): once claimed, head,
// work field ("w"; nil for a task stored before it), and for a task stored
// by an earlier version the values of v1ClaimFields (and oldClaimFields)
// after them; 0 when the task is gone or not ENQUEUED (cancelled, claimed
// already, a duplicate queue entry) or was parked because its lambda or
// collection is paused (gate.go). head is "<values after the work field>
// <attempt> <token> <enqueued> <requeued> <last execution> <namespace>"
// (empty for those unknown): every element of a reply costs redis-server a
// conversion and the client a parse and an allocation or two, and one
// string carries these seven. A
// first claim (no token yet) reads neither enqueued-at nor last execution
// unless the enqueue timeout is the longer: it has had no execution, its
// pickup counts from when it was due, and no trigger is reckoned from its
// enqueue.
var claimScript = redis.NewScript(luaPrelude + luaPark + luaPrefixes + `
local now, deadline, wake, etimeout = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
-- an enqueue timeout longer than the claim's: the enqueue trigger may come
-- after the claim deadline, and is reckoned from enqueued-at ("ea")
local late = etimeout > deadline - tonumber(now)
local out = {}
-- attempts and tokens are small numbers: as strings without printf
local ints = {[0] = "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"}
local none = {}
local r = 5
while r <= #ARGV do
  local lv, n = ARGV[r], tonumber(ARGV[r + 1])
  -- "lv" holds the claim's lambda version and time (claimVersion)
  local lvnow = lv .. " " .. now
  for i = r + 2, r + 1 + n do
    local id = ARGV[i]
    local hh = string.sub(id, 1, 2)
    local prefix = prefixes[hh]
    local tkey = prefix .. "task:" .. id
    local v = redis.call("HMGET", tkey, "st", "att", "tok", "ns", "w", "rq")
    if v[1] ~= ENQUEUED or (gated[prefix] and park(prefix, id, now)) then
      out[#out + 1] = 0
    else
      local ea, xs = "", ""
      if v[3] or late then
        local x = redis.call("HMGET", tkey, "ea", "xs")
        ea, xs = x[1] or "", x[2] or ""
      end
      local w = v[5]
      local old = none
      local wv = w and string.byte(w, 1)
      if wv ~= 2 and wv ~= 3 then
        if w then
          old = redis.call("HMGET", tkey, ` + v1ClaimFields + `)
        else
          old = redis.call("HMGET", tkey, ` + v1ClaimFields + `, ` + oldClaimFields + `)
        end
      end
      local tok = (tonumber(v[3]) or 0) + 1
      local att = (tonumber(v[2]) or tok - 1) + 1 -- no "att": the token's
      att, tok = ints[att] or fmt("%d", att), ints[tok] or fmt("%d", tok)
      if v[2] then
        redis.call("HSET", tkey, "st", CLAIMED, "lv", lvnow, "att", att, "tok", tok)
      else
        redis.call("HSET", tkey, "st", CLAIMED, "lv", lvnow, "tok", tok)
      end
      if late then
        local e = tonumber(ea)
        if not e or e + etimeout > deadline then
          set_trigger(prefix .. "trigger", id, ARGV[2], wake, tonumber(hh, 16))
        end
      end
      out[#out + 1] = ints[#old] .. " " .. att .. " " .. tok .. " " .. ea .. " " .. (v[6] or "") .. " " .. xs .. " " .. (v[4] or "")
      out[#out + 1] = w or false
      for j = 1, #old do
        out[#out + 1] = old[j]
      end
    end
  end
  r = r + 2 + n
end
return out
`)

// v1ClaimFields are the task hash fields claimScript returns after the
// head and the work field for a task stored before work field version 2,
// oldClaimFields after those for one stored before any work field ("w"
// is then nil), in the order decodeClaimed reads them.
const (
	v1ClaimFields  = `"lam", "max"`
	oldClaimFields = `"pri", "pl", "tp", "xa", "ca"`
)

// heartbeatScript extends a claim and answers what the executor must do.
//
// KEYS[1] task hash
// KEYS[2] partition trigger zset
// ARGV[1] task id
// ARGV[2] fencing token the executor holds
// ARGV[3] progress (0-100), -1 to leave it
// ARGV[4] now (ms)
// ARGV[5] heartbeat deadline: now + heartbeat timeout (ms)
// ARGV[6] wake channel
// ARGV[7] partition number
//
// Returns an atf.v1.Directive: 1 CONTINUE, 2 CANCEL, 3 CLAIM_LOST.
var heartbeatScript = redis.NewScript(luaPrelude + `
local v = redis.call("HMGET", KEYS[1], "st", "tok", "cr", "sa")
local st = v[1]
if not st then
  return 3
end
if st == CANCELLED then
  return 2
end
if v[2] ~= ARGV[2] or (st ~= CLAIMED and st ~= PROCESSING) then
  return 3
end
set_trigger(KEYS[2], ARGV[1], ARGV[5], ARGV[6], ARGV[7])
redis.call("HSET", KEYS[1], "hb", ARGV[4], "ua", ARGV[4])
if st == CLAIMED then
  redis.call("HSET", KEYS[1], "st", PROCESSING)
  if not v[4] then
    redis.call("HSET", KEYS[1], "sa", ARGV[4])
  end
end
if tonumber(ARGV[3]) >= 0 then
  redis.call("HSET", KEYS[1], "pg", ARGV[3])
end
if v[3] == "1" then
  return 2
end
return 1
`)

// setResultScript records executions' outcomes under their current
// claims: the results that callers made at about the same time, in one
// call (on Redis Cluster, of one partition; the caller groups them), which
// saves redis-server a script call's fixed cost per result.
//
// KEYS[1] the trigger zset of the first task's partition (it routes the
// call on a cluster; every key is built from the task ids, whose first
// two hex digits name their partition)
// ARGV[1] now (ms)
// ARGV[2] a retry at least this far ahead (ms) wakes no consumer (MaxSweep
// and a second)
// ARGV[3] wake channel
// ARGV[4...] per result, 4 to 7 values:
//
//	id, fencing token, outcome (atf.v1.Outcome: 1 SUCCESS, 2 RETRY,
//	3 FATAL, 4 CANCELLED), followed by letters: "t" when the output was
//	truncated, "o" when the output follows, "e" when an error
//	(atf.v1.TaskError, proto binary) follows, "r" when a retry at (ms)
//	follows (none: now); duration (microseconds); then those that follow,
//	in that order. Every argument costs redis-server ~1k instructions: a
//	success with no output is 4.
//
// Returns per result its new state when recorded, and when the token is
// not the current claim or the task is not running (nothing changes then)
// -1 less its current state (-1: gone).
//
// A task's first claim ever (token 1, no "att": claimVersion) follows no
// execution — a RetryTask, the one way to a second first attempt, writes
// "att" — and has no earlier output or error to clear, so empty ones are
// not written:
// each field written costs redis-server a conversion, a listpack search
// and an AOF entry. Nor is "ua" beside "fa": a finished task was last
// updated when it finished; nor "sa" beside "fa" and "dur" when it never
// heartbeat: it started its duration before it finished (decodeTask). Finished tasks leave the trigger
// set together at the end, one ZREM per set. An exhausted attempt's error gets
// attempts_exhausted (field 7) appended: a field appended to a proto
// message overrides an earlier value of it.
var setResultScript = redis.NewScript(luaPrelude + luaLater + luaPrefixes + `
local now, nowake, wake = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local res, zrems = {}, {}
local i, n = 4, #ARGV
while i <= n do
  local id, tok, out, dur = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local output, blob, ra, truncated = "", "", now, false
  if #out > 1 then
    truncated = string.find(out, "t", 2, true) ~= nil
    if string.find(out, "o", 2, true) then
      output, i = ARGV[i], i + 1
    end
    if string.find(out, "e", 2, true) then
      blob, i = ARGV[i], i + 1
    end
    if string.find(out, "r", 2, true) then
      ra, i = ARGV[i], i + 1
    end
    out = string.sub(out, 1, 1)
  end
  local hh = string.sub(id, 1, 2)
  local prefix = prefixes[hh]
  local tkey = prefix .. "task:" .. id
  local zrem = zrems[hh] -- the trigger set's entries to remove
  if not zrem then
    zrem = later_of(prefix .. "trigger")
    zrems[hh] = zrem
  end
  local v = redis.call("HMGET", tkey, "st", "tok", "att")
  local st = v[1]
  -- the task's first claim ever, its attempt the token's (no "att"):
  -- nothing ran before, nothing to clear
  local first = tok == "1" and not v[3]
  if not st or v[2] ~= tok or (st ~= CLAIMED and st ~= PROCESSING) then
    res[#res + 1] = -1 - (tonumber(st) or 0)
  elseif out == "1" and not truncated and blob == "" and first then
    -- the common case, a first attempt's success: nothing to clear, no
    -- trigger to keep; the duration rides in "fa" after the finish time
    -- (finishedAt), one field less to write
    if output == "" then
      redis.call("HSET", tkey, "st", SUCCESS, "fa", now .. " " .. dur)
    else
      redis.call("HSET", tkey, "st", SUCCESS, "out", output, "fa", now .. " " .. dur)
    end
    zrem[#zrem + 1] = id
    res[#res + 1] = 6
  else
    local att = tonumber(v[3]) or tonumber(tok) -- no "att": the token's
    local nst
    local started = true -- whether it has a start time ("sa"): only a retry asks
    if out == "1" then
      nst = SUCCESS
    elseif out == "3" then
      nst = FATAL
    elseif out == "4" then
      nst = CANCELLED
    else
      local r = redis.call("HMGET", tkey, "max", "sa", "w")
      local _, max = lam_max(r[3], nil, r[1])
      if att >= (tonumber(max) or 1) then
        nst = FATAL
        blob = blob .. "\56\1"
      else
        nst = RETRIABLE
        started = r[2]
      end
    end
    local f = {"st", nst, "dur", dur}
    local clean = first
    if output ~= "" or not clean then
      f[#f + 1], f[#f + 2] = "out", output
    end
    if truncated or not clean then
      f[#f + 1], f[#f + 2] = "otr", truncated and "1" or "0"
    end
    if blob ~= "" or not clean then
      f[#f + 1], f[#f + 2] = "err", with_attempt(blob, att)
    end
    if not started then
      -- never heartbeaten (it ran shorter than the executor's first beat):
      -- it started a duration ago (in whole milliseconds, rounded up: a
      -- task started on its execute_at must not show a start before it)
      f[#f + 1], f[#f + 2] = "sa", fmt("%d", tonumber(now) - math.floor(tonumber(dur) / 1000))
    end
    if nst == RETRIABLE then
      f[#f + 1], f[#f + 2] = "ra", ra
      f[#f + 1], f[#f + 2] = "ua", now
      redis.call("HSET", tkey, unpack(f))
      local w = ""
      if tonumber(ra) - tonumber(now) < nowake then
        w = wake
      end
      set_trigger(prefix .. "trigger", id, ra, w, tonumber(hh, 16))
    else
      -- finished (finish's work, with "fa" among the fields written)
      f[#f + 1], f[#f + 2] = "fa", now
      redis.call("HSET", tkey, unpack(f))
      zrem[#zrem + 1] = id
    end
    res[#res + 1] = tonumber(nst)
  end
end
flush_later("ZREM")
return res
`)

// processDueScript applies the state table to a partition's due triggers.
//
// KEYS[1] partition trigger zset
// ARGV[1] now (ms)
// ARGV[2] at most this many triggers
// ARGV[3] partition key prefix
// ARGV[4] enqueue deadline: now + enqueue timeout (ms)
// ARGV[5] heartbeat-timeout error (atf.v1.TaskError, proto binary)
// ARGV[6] the same error with attempts_exhausted set
// ARGV[7] claim timeout (ms): a CLAIMED task's deadline is its claim
// (the time in "lv") plus this; with 0 its trigger is its deadline
//
// Returns {moved, earliest remaining trigger (ms) or "", then per push the
// caller must make: queue, id, state before (the reason), traceparent,
// lambda}.
var processDueScript = redis.NewScript(luaPrelude + `
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
local now = ARGV[1]
local claim = tonumber(ARGV[7])
local res = {0, ""}
local moved = 0
for _, id in ipairs(ids) do
  local tkey = ARGV[3] .. "task:" .. id
  local v = redis.call("HMGET", tkey, "st", "att", "max", "cr", "q", "ns", "lam", "w", "ua", "tok", "lv")
  v[6] = v[6] or DEFAULT_NS
  v[5] = queue_of(v[5], v[6], v[8])
  v[7], v[3] = lam_max(v[8], v[7], v[3])
  local st = v[1]
  local att = tonumber(v[2]) or tonumber(v[10]) or 0 -- no "att": the token's
  -- claimed at: in "lv" after the version, or "ua" (claimed by an earlier
  -- version)
  local claimed = v[11] and tonumber(string.match(v[11], " (%d+)$")) or tonumber(v[9]) or 0
  local push = false
  if st == NEW or st == RETRIABLE then
    redis.call("HSET", tkey, "st", ENQUEUED, "ea", now, "ua", now)
    push = true
  elseif st == ENQUEUED then
    -- pushed again (the push was lost): enqueued now, which is what a
    -- claim reckons its trigger from
    redis.call("HSET", tkey, "ea", now)
    push = true
  elseif st == CLAIMED and v[4] == "1" then
    -- cancelled while claimed, and its claimer never started it: it ends
    -- cancelled here rather than running again to hear so at a heartbeat
    redis.call("HSET", tkey, "st", CANCELLED, "att", math.max(att - 1, 0), "ua", now)
    finish(tkey, KEYS[1], id, now)
  elseif st == CLAIMED and claim > 0 and claimed + claim > tonumber(now) then
    -- claimed after its enqueue trigger was set (claimScript): alive
    -- until the claim's deadline, when it is looked at again
    redis.call("ZADD", KEYS[1], fmt("%d", claimed + claim), id)
  elseif st == CLAIMED then
    -- the claimer never started it: the attempt does not count
    redis.call("HSET", tkey, "st", ENQUEUED, "att", math.max(att - 1, 0), "ea", now, "ua", now)
    push = true
  elseif st == PROCESSING then
    if v[4] == "1" then
      redis.call("HSET", tkey, "st", CANCELLED, "ua", now)
      finish(tkey, KEYS[1], id, now)
    elseif att >= (tonumber(v[3]) or 1) then
      redis.call("HSET", tkey, "st", FATAL, "err", with_attempt(ARGV[6], att), "ua", now)
      finish(tkey, KEYS[1], id, now)
    else
      redis.call("HSET", tkey, "st", ENQUEUED, "err", with_attempt(ARGV[5], att), "ea", now, "ua", now)
      push = true
    end
  else
    -- gone (expired) or terminal: a stale trigger
    redis.call("ZREM", KEYS[1], id)
    moved = moved - 1
  end
  moved = moved + 1
  if push then
    redis.call("ZADD", KEYS[1], ARGV[4], id)
    res[#res + 1] = v[5]
    res[#res + 1] = id
    res[#res + 1] = st
    -- the work field (the caller reads the traceparent from it), or the
    -- traceparent of a task stored before it
    res[#res + 1] = v[8] or redis.call("HGET", tkey, "tp") or ""
    res[#res + 1] = v[7] or ""
  end
end
res[1] = moved
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
if first[2] then
  res[2] = first[2]
end
return res
`)

// cancelScript cancels a task: at once when it is not running, by request
// (answered on the next heartbeat) when it is.
//
// KEYS[1] task hash
// KEYS[2] partition trigger zset
// ARGV[1] task id
// ARGV[2] now (ms)
//
// Returns {0} when there is no such task, else {code, {task hash}} with code
// 1 cancelled, 2 cancel requested, 3 already finished (nothing changed).
var cancelScript = redis.NewScript(luaPrelude + `
local st = redis.call("HGET", KEYS[1], "st")
if not st then
  return {0}
end
local code = 3
if st == NEW or st == ENQUEUED or st == RETRIABLE then
  redis.call("HSET", KEYS[1], "st", CANCELLED, "ua", ARGV[2])
  finish(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
  code = 1
elseif st == CLAIMED or st == PROCESSING then
  redis.call("HSET", KEYS[1], "cr", "1", "ua", ARGV[2])
  code = 2
end
return {code, redis.call("HGETALL", KEYS[1])}
`)

// retryScript runs a dead letter (FATAL_FAILURE) or a cancelled task again.
//
// KEYS[1] task hash
// KEYS[2] partition trigger zset
// ARGV[1] task id
// ARGV[2] now (ms)
// ARGV[3] its next trigger (ms): now + enqueue timeout, or, with ARGV[7]
// "1", its execute_at less the dispatch lead
// ARGV[4] partition key prefix
// ARGV[5] wake channel
// ARGV[6] partition number
// ARGV[7] "1" when its execute_at is still ahead (it was cancelled before
// its time): it waits for it, NEW, instead of being enqueued now
//
// Returns {0} when there is no such task, else {code, {task hash}} with code
// 1 enqueued (the caller pushes it unless ARGV[7] is "1"), 3 not
// retriable (nothing changed).
var retryScript = redis.NewScript(luaPrelude + `
local v = redis.call("HMGET", KEYS[1], "st", "ns", "lam", "key", "w")
v[2], v[3] = v[2] or DEFAULT_NS, lam_max(v[5], v[3])
local st = v[1]
if not st then
  return {0}
end
if st ~= FATAL and st ~= CANCELLED then
  return {3, redis.call("HGETALL", KEYS[1])}
end
if ARGV[7] == "1" then
  -- not enqueued: "ea" 0 rather than none, which work version 3 reads
  -- as enqueued when created
  redis.call("HSET", KEYS[1], "st", NEW, "att", 0, "cr", "0", "ua", ARGV[2], "rq", ARGV[2], "ea", "0")
  redis.call("HDEL", KEYS[1], "fa", "ra")
else
  redis.call("HSET", KEYS[1], "st", ENQUEUED, "att", 0, "cr", "0", "ea", ARGV[2], "ua", ARGV[2], "rq", ARGV[2])
  redis.call("HDEL", KEYS[1], "fa", "ra")
end
-- a task finished by an earlier version has a TTL (and its key mapping)
redis.call("PERSIST", KEYS[1])
if v[4] and v[4] ~= "" then
  local kk = ARGV[4] .. "key:" .. v[2] .. ":" .. v[3] .. ":" .. v[4]
  if redis.call("GET", kk) == ARGV[1] then
    redis.call("PERSIST", kk)
  end
end
set_trigger(KEYS[2], ARGV[1], ARGV[3], ARGV[5], ARGV[6])
return {1, redis.call("HGETALL", KEYS[1])}
`)

// deployLambdaScript stores a new version of a lambda.
//
// KEYS[1] lambda hash
// KEYS[2] namespace's set of lambda names
// KEYS[3] namespace's hash of name -> last version (it survives
// DeleteLambda, so one version number never names two deploys)
// KEYS[4] set of namespaces that ever deployed a lambda
// ARGV[1] lambda name
// ARGV[2] now (ms)
// ARGV[3] namespace
// ARGV[4...] lambda hash field, value, ...
//
// Returns {version, created (ms)}.
var deployLambdaScript = redis.NewScript(`
local prev = redis.call("HMGET", KEYS[1], "v", "ca")
local last = tonumber(redis.call("HGET", KEYS[3], ARGV[1])) or 0
local version = math.max(tonumber(prev[1]) or 0, last) + 1
local created = prev[2] or ARGV[2]
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "v", version, "ca", created, "ua", ARGV[2], unpack(ARGV, 4))
redis.call("SADD", KEYS[2], ARGV[1])
redis.call("HSET", KEYS[3], ARGV[1], version)
redis.call("SADD", KEYS[4], ARGV[3])
return {version, created}
`)

// deleteLambdaScript removes a lambda (not its module, not its tasks).
//
// KEYS[1] lambda hash
// KEYS[2] namespace's set of lambda names
// ARGV[1] lambda name
//
// Returns 1 when deleted, 0 when there was no such lambda.
var deleteLambdaScript = redis.NewScript(`
if redis.call("DEL", KEYS[1]) == 0 then
  return 0
end
redis.call("SREM", KEYS[2], ARGV[1])
return 1
`)
