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

// MaxLogBytes caps the logs kept per task (the latest attempt's stderr
// tail; the sandbox keeps 4 KiB by default).
const MaxLogBytes = 64 << 10

func logsKey(p int, id string) string { return partPrefix(p) + "logs:" + id }

// recordAttemptScript stores what an attempt left for observability, from
// its current claim only.
//
// KEYS[1] task hash
// KEYS[2] logs string
// ARGV[1] fencing token
// ARGV[2] traceparent of the attempt's execute span ("" keeps the old one)
// ARGV[3] logs ("" deletes them)
// ARGV[4] retention (ms)
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
  redis.call("SET", KEYS[2], ARGV[3], "PX", ARGV[4])
else
  redis.call("DEL", KEYS[2])
end
return 1
`)

// RecordAttempt stores, for the claim holding token, the traceparent of
// its execute span (Task.LastExecution, which the next attempt's span
// links to) and its logs, capped at MaxLogBytes (the end is kept) and kept
// for the retention. A stale token is ErrClaimLost and changes nothing.
func (s *Store) RecordAttempt(ctx context.Context, id string, token int64, traceparent, logs string) error {
	p, err := s.PartitionOf(id)
	if err != nil {
		return err
	}
	if len(logs) > MaxLogBytes {
		logs = logs[len(logs)-MaxLogBytes:]
	}
	n, err := recordAttemptScript.Run(ctx, s.rdb, []string{taskKey(p, id), logsKey(p, id)},
		token, traceparent, logs, s.opts.Retention.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("store: record attempt of task %s: %w", id, err)
	}
	if n == 0 {
		return errorf(ErrClaimLost, "task %s: claim lost: token %d is not the current claim", id, token)
	}
	return nil
}

// TaskLogs returns the logs of a task's latest attempt ("" when it has
// none, or has not run yet).
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
