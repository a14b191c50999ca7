package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// fLastExecution is the task hash field holding the traceparent of the
// latest attempt's execute span.
const fLastExecution = "xs"

// MaxLogBytes caps the logs kept per task: what its attempts logged, in
// order; when they pass it, the oldest lines go.
const MaxLogBytes = 64 << 10

func logsKey(p int, id string) string { return partPrefix(p) + "logs:" + id }

// recordAttemptScript stores what an attempt left for observability, from
// its current claim only.
//
// KEYS[1] task hash
// KEYS[2] logs string
// ARGV[1] fencing token
// ARGV[2] traceparent of the attempt's execute span ("" keeps the old one)
// ARGV[3] the attempt's logs, appended ("" appends nothing)
// ARGV[4] retention (ms)
// ARGV[5] MaxLogBytes: beyond it the start is cut, up to a line start
//
// Returns 1, or 0 when the token is not the task's current claim.
var recordAttemptScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "tok") ~= ARGV[1] then
  return 0
end
if ARGV[2] ~= "" then
  redis.call("HSET", KEYS[1], "xs", ARGV[2])
end
if ARGV[3] ~= "" then
  local n = redis.call("APPEND", KEYS[2], ARGV[3])
  local max = tonumber(ARGV[5])
  if n > max then
    local kept = redis.call("GETRANGE", KEYS[2], n - max, -1)
    local nl = string.find(kept, "\n", 1, true)
    if nl and nl < #kept then
      kept = string.sub(kept, nl + 1)
    end
    redis.call("SET", KEYS[2], kept)
  end
  redis.call("PEXPIRE", KEYS[2], ARGV[4])
end
return 1
`)

// RecordAttempt stores, for the claim holding token, the traceparent of
// its execute span (Task.LastExecution, which the next attempt's span
// links to) and appends its logs to the task's: the task keeps the last
// MaxLogBytes of what its attempts logged (cut at a line start), for the
// retention. A stale token is ErrClaimLost and changes nothing.
func (s *Store) RecordAttempt(ctx context.Context, id string, token int64, traceparent, logs string) error {
	p, err := s.PartitionOf(id)
	if err != nil {
		return err
	}
	if len(logs) > MaxLogBytes {
		logs = logs[len(logs)-MaxLogBytes:]
	}
	n, err := recordAttemptScript.Run(ctx, s.rdb, []string{taskKey(p, id), logsKey(p, id)},
		token, traceparent, logs, s.opts.Retention.Milliseconds(), MaxLogBytes).Int()
	if err != nil {
		return fmt.Errorf("store: record attempt of task %s: %w", id, err)
	}
	if n == 0 {
		return errorf(ErrClaimLost, "task %s: claim lost: token %d is not the current claim", id, token)
	}
	return nil
}

// TaskLogs returns what a task's attempts logged ("" when they logged
// nothing, or none has ended yet).
func (s *Store) TaskLogs(ctx context.Context, ns, id string) (string, error) {
	p, err := s.checkOwner(ctx, ns, id)
	if err != nil {
		return "", err
	}
	logs, err := s.rdb.Get(ctx, logsKey(p, id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: logs of task %s: %w", id, err)
	}
	return logs, nil
}
