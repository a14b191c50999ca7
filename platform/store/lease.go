package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Partitions are shared out among store consumers by leases. Every
// consumer calls BalancePartitions a few times per lease period: it
// renews its membership and its partitions' leases, gives up what is over
// its fair share, and takes free or expired partitions up to it. A
// consumer that dies stops renewing; within one lease period its
// partitions are free and the next renewal of another consumer takes
// them. Two consumers may briefly both process a partition while a lease
// changes hands; that is harmless, since every move of a task is one
// script that checks the task's state.

func leaseMembersKey() string { return "atf:{lease}:consumers" }
func leaseOwnerKey() string   { return "atf:{lease}:owner" }
func leaseUntilKey() string   { return "atf:{lease}:until" }

// BalancePartitions renews owner's membership and leases for lease and
// returns the partitions it owns now.
func (s *Store) BalancePartitions(ctx context.Context, owner string, lease time.Duration) ([]int, error) {
	res, err := balanceScript.Run(ctx, s.rdb, []string{leaseMembersKey(), leaseOwnerKey(), leaseUntilKey()},
		owner, s.now().UnixMilli(), lease.Milliseconds(), s.opts.Partitions).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("store: balance partitions: %w", err)
	}
	out := make([]int, len(res))
	for i, p := range res {
		out[i] = int(p)
	}
	return out, nil
}

// ReleasePartitions gives up owner's partitions and membership at once (a
// clean shutdown), so that others need not wait for the leases to run out.
func (s *Store) ReleasePartitions(ctx context.Context, owner string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{leaseMembersKey(), leaseOwnerKey(), leaseUntilKey()},
		owner, s.opts.Partitions).Err(); err != nil {
		return fmt.Errorf("store: release partitions: %w", err)
	}
	return nil
}

// balanceScript renews a consumer and shares partitions out.
//
// KEYS[1] zset of consumers -> membership expiry (ms)
// KEYS[2] hash partition -> owner
// KEYS[3] hash partition -> lease expiry (ms)
// ARGV[1] owner
// ARGV[2] now (ms)
// ARGV[3] lease (ms)
// ARGV[4] number of partitions
//
// Returns the partitions owner holds now.
var balanceScript = redis.NewScript(`
local owner, now, lease, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
redis.call("ZADD", KEYS[1], now + lease, owner)
local share = math.ceil(n / redis.call("ZCARD", KEYS[1]))
local mine, free = {}, {}
for p = 0, n - 1 do
  local o = redis.call("HGET", KEYS[2], p)
  local u = tonumber(redis.call("HGET", KEYS[3], p) or "0")
  if o == owner and u > now then
    mine[#mine + 1] = p
  elseif (not o) or u <= now then
    free[#free + 1] = p
  end
end
while #mine > share do
  local p = table.remove(mine)
  redis.call("HDEL", KEYS[2], p)
  redis.call("HDEL", KEYS[3], p)
end
local i = 1
while #mine < share and i <= #free do
  mine[#mine + 1] = free[i]
  i = i + 1
end
for _, p in ipairs(mine) do
  redis.call("HSET", KEYS[2], p, owner)
  redis.call("HSET", KEYS[3], p, now + lease)
end
table.sort(mine)
return mine
`)

// releaseScript gives up a consumer's partitions.
//
// KEYS as balanceScript; ARGV[1] owner, ARGV[2] number of partitions.
var releaseScript = redis.NewScript(`
for p = 0, tonumber(ARGV[2]) - 1 do
  if redis.call("HGET", KEYS[2], p) == ARGV[1] then
    redis.call("HDEL", KEYS[2], p)
    redis.call("HDEL", KEYS[3], p)
  end
end
redis.call("ZREM", KEYS[1], ARGV[1])
return 1
`)
