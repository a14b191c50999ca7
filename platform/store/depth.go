package store

import (
	"context"
	"fmt"
)

// QueueDepth is the length of one queue.
type QueueDepth struct {
	Lambda   string
	Priority int
	Length   int64
}

// QueueDepths returns the length of every queue of ns's lambdas (ten
// priorities each): one SMEMBERS and one pipelined round of LLEN, for the
// atf.queue.depth gauge.
func (s *Store) QueueDepths(ctx context.Context, ns string) ([]QueueDepth, error) {
	names, err := s.rdb.SMembers(ctx, lambdasKey(ns)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: queue depths: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	out := make([]QueueDepth, 0, len(names)*10)
	for _, name := range names {
		for p := range 10 {
			out = append(out, QueueDepth{Lambda: name, Priority: p})
			pipe.LLen(ctx, s.QueueKey(ns, name, p))
		}
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: queue depths: %w", err)
	}
	for i, c := range cmds {
		if n, ok := c.(interface{ Val() int64 }); ok {
			out[i].Length = n.Val()
		}
	}
	return out, nil
}
