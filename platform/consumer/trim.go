package consumer

import (
	"context"
	"time"

	"github.com/atfhq/atf/platform/store"
)

// IndexTrimmer is the optional capability of a Store whose index sets
// need trimming; *store.Store has it. Every TrimEvery, a consumer drops
// from the index sets of the partitions it owns the entries of tasks whose
// retention ran out (store.TrimIndex), so that Redis memory stays flat
// under a steady load.
type IndexTrimmer interface {
	IndexedLambdas(ctx context.Context) ([]store.LambdaRef, error)
	TrimIndex(ctx context.Context, p int, l store.LambdaRef, cur store.TrimCursor, limit int) (int, store.TrimCursor, bool, error)
}

const (
	// DefaultTrimEvery is how often a consumer trims its partitions' index
	// sets: entries outlive their tasks by at most about this much.
	DefaultTrimEvery = time.Minute
	// trimChunk bounds the entries one script looks at (~1 ms of Redis).
	trimChunk = 1000
	// trimChunksPerRound bounds one round's work per index set; a set
	// with more old entries goes on from its cursor next round. 50,000
	// entries a minute per lambda and partition is ~13,000 finished tasks
	// a second per lambda over 16 partitions.
	trimChunksPerRound = 50
)

type trimSet struct {
	p int
	l store.LambdaRef
}

// runTrim trims the owned partitions' index sets every TrimEvery until ctx
// ends.
func (c *Consumer) runTrim(ctx context.Context, ts IndexTrimmer) {
	tick := time.NewTicker(c.cfg.TrimEvery)
	defer tick.Stop()
	cursors := map[trimSet]store.TrimCursor{}
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
func (c *Consumer) trimOnce(ctx context.Context, ts IndexTrimmer, cursors map[trimSet]store.TrimCursor) error {
	lambdas, err := ts.IndexedLambdas(ctx)
	if err != nil {
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
		for _, l := range lambdas {
			k := trimSet{p, l}
			for range trimChunksPerRound {
				n, next, done, err := ts.TrimIndex(ctx, p, l, cursors[k], trimChunk)
				if err != nil {
					return err
				}
				removed += n
				cursors[k] = next
				if done {
					break
				}
			}
		}
	}
	if removed > 0 {
		c.cfg.Logger.Debug("trimmed index sets", "entries", removed, "partitions", len(owned))
	}
	return nil
}
