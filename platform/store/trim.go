package store

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Index sets outlive their tasks: a finished task's hash and key mapping
// expire after the retention (PEXPIRE), but its entry in its lambda's
// index set, which ListTasks reads, would stay for good. TrimIndex drops
// the entries of tasks gone; the store consumer runs it over the
// partitions it owns (consumer.Config.TrimEvery), so that Redis memory
// stays flat under a steady load. Nothing on a task's path pays for it.

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
	for _, ns := range append(nss, "default") {
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

// TrimCursor is where TrimIndex goes on in one index set; the zero value
// is its beginning.
type TrimCursor struct {
	anchor, score string
}

// TrimIndex looks at up to limit entries of partition p's index set of
// lambda l, from cur on, among those created more than the retention ago
// (only those can be of expired tasks: a task is kept the retention after
// it finished), and drops the entries whose task is gone. It returns how
// many it dropped and the cursor to go on with; done is true, and the
// cursor the zero one, when it reached the set's end or its entries
// created since the cutoff.
func (s *Store) TrimIndex(ctx context.Context, p int, l LambdaRef, cur TrimCursor, limit int) (removed int, next TrimCursor, done bool, err error) {
	if p < 0 || p >= s.opts.Partitions || limit <= 0 {
		return 0, cur, true, errorf(ErrInvalid, "partition %d, limit %d", p, limit)
	}
	cutoff := ms(s.now().Add(-s.opts.Retention))
	res, err := trimScript.Run(ctx, s.rdb, []string{indexKey(p, l.Namespace, l.Name)},
		partPrefix(p), cutoff, cur.anchor, cur.score, limit).Slice()
	if err != nil {
		return 0, cur, true, fmt.Errorf("store: trim index of lambda %q in partition %d: %w", l.Name, p, err)
	}
	if len(res) != 4 {
		return 0, cur, true, fmt.Errorf("store: trim index: script answered %d values, want 4", len(res))
	}
	n, _ := res[0].(int64)
	next.anchor, _ = res[1].(string)
	next.score, _ = res[2].(string)
	d, _ := res[3].(int64)
	return int(n), next, d == 1, nil
}

// trimScript drops from an index set the entries of tasks gone, among a
// chunk of the entries created before a cutoff, going on after an anchor
// (luaAfter): the last entry it kept.
//
// KEYS[1] the index set
// ARGV[1] partition key prefix
// ARGV[2] cutoff: created before it (ms)
// ARGV[3] anchor: the member after which to go on, "" from the start
// ARGV[4] the anchor's score when it was read
// ARGV[5] at most this many entries
//
// Returns {dropped, anchor, anchor's score, 1 when done else 0}.
var trimScript = redis.NewScript(luaAfter + `
local start = after(KEYS[1], ARGV[3], ARGV[4])
local limit = tonumber(ARGV[5])
local entries = redis.call("ZRANGE", KEYS[1], start, start + limit - 1, "WITHSCORES")
local cutoff = tonumber(ARGV[2])
local anchor, score = ARGV[3], ARGV[4]
local removed = 0
local done = #entries < 2 * limit
for i = 1, #entries, 2 do
  if tonumber(entries[i + 1]) >= cutoff then
    done = true
    break
  end
  if redis.call("EXISTS", ARGV[1] .. "task:" .. entries[i]) == 0 then
    redis.call("ZREM", KEYS[1], entries[i])
    removed = removed + 1
  else
    anchor, score = entries[i], entries[i + 1]
  end
end
if done then
  return {removed, "", "", 1}
end
return {removed, anchor, score, 0}
`)

// String is "<namespace>/<name>".
func (l LambdaRef) String() string { return l.Namespace + "/" + l.Name }
