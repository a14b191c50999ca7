package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// QueueDepth is the length of one queue.
type QueueDepth struct {
	Namespace string
	Lambda    string
	Priority  int
	Length    int64
}

// QueueDepths returns the length of every queue (ten priorities per
// lambda) of every namespace that deployed a lambda, plus always
// defaultNS (lambdas deployed before the namespace set existed): one round
// to list the namespaces, one pipelined round of SMEMBERS and one of LLEN,
// for the atf.queue.depth gauge.
func (s *Store) QueueDepths(ctx context.Context, defaultNS string) ([]QueueDepth, error) {
	nss, err := s.rdb.SMembers(ctx, namespacesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: queue depths: %w", err)
	}
	if defaultNS != "" && !slices.Contains(nss, defaultNS) {
		nss = append(nss, defaultNS)
	}
	slices.Sort(nss)
	pipe := s.rdb.Pipeline()
	members := make([]*redis.StringSliceCmd, len(nss))
	for i, ns := range nss {
		members[i] = pipe.SMembers(ctx, lambdasKey(ns))
	}
	if len(nss) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("store: queue depths: %w", err)
		}
	}
	var out []QueueDepth
	pipe = s.rdb.Pipeline()
	var lens []*redis.IntCmd
	for i, ns := range nss {
		names := members[i].Val()
		slices.Sort(names)
		for _, name := range names {
			for p := range 10 {
				out = append(out, QueueDepth{Namespace: ns, Lambda: name, Priority: p})
				lens = append(lens, pipe.LLen(ctx, s.QueueKey(ns, name, p)))
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: queue depths: %w", err)
	}
	for i, c := range lens {
		out[i].Length = c.Val()
	}
	return out, nil
}
