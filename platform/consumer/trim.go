package consumer

import (
	"context"
	"time"

	"github.com/atfhq/atf/platform/store"
)

// IndexTrimmer is the optional capability of a Store whose index sets
// need trimming; *store.Store has it. Every TrimEvery, a consumer deletes
// the tasks of the partitions it owns whose retention ran out, with their
// key mappings and index entries (store.TrimIndexes: one script per
// partition), so that Redis memory stays flat under a steady load.
type IndexTrimmer interface {
	IndexedLambdas(ctx context.Context) ([]store.LambdaRef, error)
	TrimIndexes(ctx context.Context, p int, lambdas []store.LambdaRef, curs []store.TrimCursor, limit int) (int, []store.TrimCursor, []bool, error)
}

const (
	// DefaultTrimEvery is how often a consumer trims its partitions: tasks
	// outlive their retention by at most about this much, and an idle
	// platform pays one script per partition and round.
	DefaultTrimEvery = 5 * time.Minute
	// trimChunk bounds the entries one script looks at per set: a chunk
	// of finished tasks to delete holds redis-server ~1 ms.
	trimChunk = 200
	// trimChunksPerRound bounds one round's scripts per partition; sets
	// with more old entries go on from their cursors next round. 200 x
	// 1,250 entries per set and round of five minutes is ~13,000 finished
	// tasks a second per lambda over 16 partitions.
	trimChunksPerRound = 1250
)

// runTrim trims the owned partitions' index sets every TrimEvery until ctx
// ends.
func (c *Consumer) runTrim(ctx context.Context, ts IndexTrimmer) {
	tick := time.NewTicker(c.cfg.TrimEvery)
	defer tick.Stop()
	cursors := map[int]map[store.LambdaRef]store.TrimCursor{} // partition -> set -> cursor
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := c.trimOnce(ctx, ts, cursors); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("trimming index sets failed; retrying next round", "err", err)
		}
	}
}

// trimOnce is one round of runTrim. cursors keep each set's place between
// rounds.
func (c *Consumer) trimOnce(ctx context.Context, ts IndexTrimmer, cursors map[int]map[store.LambdaRef]store.TrimCursor) error {
	lambdas, err := ts.IndexedLambdas(ctx)
	if err != nil || len(lambdas) == 0 {
		return err
	}
	c.mu.Lock()
	owned := make([]int, 0, len(c.owned))
	for p := range c.owned {
		owned = append(owned, p)
	}
	c.mu.Unlock()
	removed := 0
	for _, p := range owned {
		if cursors[p] == nil {
			cursors[p] = map[store.LambdaRef]store.TrimCursor{}
		}
		sets := lambdas // the sets not done yet this round
		for range trimChunksPerRound {
			curs := make([]store.TrimCursor, len(sets))
			for i, l := range sets {
				curs[i] = cursors[p][l]
			}
			n, next, done, err := ts.TrimIndexes(ctx, p, sets, curs, trimChunk)
			if err != nil {
				return err
			}
			removed += n
			var more []store.LambdaRef
			for i, l := range sets {
				cursors[p][l] = next[i]
				if !done[i] {
					more = append(more, l)
				}
			}
			if sets = more; len(sets) == 0 {
				break
			}
		}
	}
	if removed > 0 {
		c.cfg.Logger.Debug("trimmed index sets", "entries", removed, "partitions", len(owned))
	}
	return nil
}
