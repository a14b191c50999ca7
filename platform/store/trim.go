package store

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Retention: a finished task is kept, with its key mapping and its entry
// in its lambda's index set (which ListTasks reads), until the retention
// has run out since it finished; then TrimIndexes deletes all three. The
// store consumer runs it over the partitions it owns
// (consumer.Config.TrimEvery), so that Redis memory stays flat under a
// steady load, and a task goes at most about a trim round after its
// retention ran out. Nothing on a task's path pays for it: a PEXPIRE per
// finished task cost redis-server ~13k instructions (a seventh of its work
// per task; the expiry set, the AOF's PEXPIREAT) where the trim's DEL of a
// chunk of them costs a fraction of that. Tasks finished by earlier
// versions carry a TTL instead, and may go first; the trim then drops
// their entries.

// LambdaRef names a lambda of a namespace.
type LambdaRef struct {
	Namespace, Name string
}

// IndexedLambdas returns every lambda that may have tasks kept: each name
// in the versions hash (which outlives DeleteLambda) of every namespace
// that deployed a lambda, and of "default".
func (s *Store) IndexedLambdas(ctx context.Context) ([]LambdaRef, error) {
	nss, err := s.rdb.SMembers(ctx, namespacesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: list namespaces: %w", err)
	}
	seen := map[string]bool{}
	pipe := s.rdb.Pipeline()
	var names []*redis.StringSliceCmd
	var order []string
	for _, ns := range append(nss, DefaultNamespace) {
		if seen[ns] {
			continue
		}
		seen[ns] = true
		order = append(order, ns)
		names = append(names, pipe.HKeys(ctx, lambdaVersionsKey(ns)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: list lambdas ever deployed: %w", err)
	}
	var out []LambdaRef
	for i, ns := range order {
		for _, name := range names[i].Val() {
			out = append(out, LambdaRef{Namespace: ns, Name: name})
		}
	}
	return out, nil
}

// TrimCursor is where TrimIndexes goes on in one index set; the zero value
// is its beginning.
type TrimCursor struct {
	anchor, score string
}

// TrimIndexes looks, in each of partition p's index sets of the given
// lambdas, at up to limit entries from its cursor on, among those created
// more than the retention ago (only those can have finished that long
// ago), deletes the tasks among them that finished more than the retention
// ago, with their key mappings, and drops the entries of those and of
// tasks gone. One script for all the sets of the partition, so an idle
// platform pays one command per partition and round whatever its number
// of lambdas. It returns how many entries it dropped and, per set, the
// cursor to go on with; a set is done, its cursor the zero one, when the
// walk reached its end or its entries created since the cutoff.
func (s *Store) TrimIndexes(ctx context.Context, p int, lambdas []LambdaRef, curs []TrimCursor, limit int) (removed int, next []TrimCursor, done []bool, err error) {
	if p < 0 || p >= s.opts.Partitions || limit <= 0 || len(curs) != len(lambdas) {
		return 0, curs, nil, errorf(ErrInvalid, "partition %d, limit %d, %d cursors for %d lambdas", p, limit, len(curs), len(lambdas))
	}
	if len(lambdas) == 0 {
		return 0, nil, nil, nil
	}
	keys := make([]string, len(lambdas))
	args := make([]any, 0, 3+4*len(lambdas))
	args = append(args, partPrefix(p), ms(s.now().Add(-s.opts.Retention)), limit)
	for i, l := range lambdas {
		keys[i] = indexKey(p, l.Namespace, l.Name)
		args = append(args, curs[i].anchor, curs[i].score, l.Namespace, l.Name)
	}
	res, err := trimScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return 0, curs, nil, fmt.Errorf("store: trim index sets of partition %d: %w", p, err)
	}
	if len(res) != 1+3*len(lambdas) {
		return 0, curs, nil, fmt.Errorf("store: trim index sets: script answered %d values, want %d", len(res), 1+3*len(lambdas))
	}
	n, _ := res[0].(int64)
	next = make([]TrimCursor, len(lambdas))
	done = make([]bool, len(lambdas))
	for i := range lambdas {
		next[i].anchor, _ = res[1+3*i].(string)
		next[i].score, _ = res[2+3*i].(string)
		d, _ := res[3+3*i].(int64)
		done[i] = d == 1
	}
	return int(n), next, done, nil
}

// trimScript deletes, from the index sets of one partition, a chunk of
// each set's entries created before a cutoff, going on after an anchor
// (luaAfter): the last entry it kept there, the tasks finished before the
// cutoff, with their key mappings, and drops their entries and those of
// tasks gone.
//
// KEYS    the index sets
// ARGV[1] partition key prefix
// ARGV[2] cutoff: now less the retention (ms)
// ARGV[3] at most this many entries per set
// ARGV... per set: anchor ("" from the start), the anchor's score, the
// set's namespace and lambda (its tasks' key mappings are named by them)
//
// Returns {dropped, then per set: anchor, anchor's score, 1 when done
// else 0}.
var trimScript = redis.NewScript(luaPrelude + luaAfter + `
local prefix = ARGV[1]
local cutoff = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local res = {0}
for k = 1, #KEYS do
  local a = 4 * k
  local anchor, score, ns, lam = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local start = after(KEYS[k], anchor, score)
  local entries = redis.call("ZRANGE", KEYS[k], start, start + limit - 1, "WITHSCORES")
  local done = #entries < 2 * limit
  local zrem, dels = {}, {}
  for i = 1, #entries, 2 do
    if tonumber(entries[i + 1]) >= cutoff then
      done = true
      break
    end
    local id = entries[i]
    local tkey = prefix .. "task:" .. id
    local v = redis.call("HMGET", tkey, "st", "fa", "key")
    local st = v[1]
    local gone = not st
    -- "fa" is the finish time, perhaps followed by the duration
    if (st == SUCCESS or st == FATAL or st == CANCELLED) and (tonumber(string.match(v[2] or "", "^%d+")) or cutoff) < cutoff then
      dels[#dels + 1] = tkey
      if v[3] and v[3] ~= "" then
        local kk = prefix .. "key:" .. ns .. ":" .. lam .. ":" .. v[3]
        if redis.call("GET", kk) == id then
          dels[#dels + 1] = kk
        end
      end
      gone = true
    end
    if gone then
      zrem[#zrem + 1] = id
    else
      anchor, score = id, entries[i + 1]
    end
  end
  if #dels > 0 then
    redis.call("DEL", unpack(dels))
  end
  if #zrem > 0 then
    redis.call("ZREM", KEYS[k], unpack(zrem))
    res[1] = res[1] + #zrem
  end
  if done then
    anchor, score = "", ""
  end
  res[#res + 1] = anchor
  res[#res + 1] = score
  res[#res + 1] = done and 1 or 0
end
return res
`)
