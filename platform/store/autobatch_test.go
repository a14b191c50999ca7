package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

type tripCounter struct{ trips atomic.Int64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.trips.Add(1); return next(ctx, cmd) }
}
func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.trips.Add(1); return next(ctx, cmds) }
}

// TestAutoPipe: commands queued through an autoBatch; every caller's commands run exactly once and each caller
// reads its own results, while concurrent callers share round trips.
func TestAutoPipe(t *testing.T) {
	b := setup(t)
	counter := &tripCounter{}
	b.rdb.AddHook(counter)
	p := newAutoBatch(func(ctx context.Context, adds []func(pipe redis.Pipeliner)) {
		pipe := b.rdb.Pipeline()
		for _, add := range adds {
			add(pipe)
		}
		_, _ = pipe.Exec(ctx)
	})
	const callers, each = 64, 50
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			key := "autopipe:" + string(rune('A'+c%26)) + string(rune('a'+c/26))
			for i := 1; i <= each; i++ {
				var cmd *redis.IntCmd
				if err := p.do(b.ctx, func(pipe redis.Pipeliner) { cmd = pipe.Incr(b.ctx, key) }); err != nil {
					t.Error(err)
					return
				}
				if v, err := cmd.Result(); err != nil || v != int64(i) {
					t.Errorf("caller %d: INCR #%d = %d, %v", c, i, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if trips := counter.trips.Load(); trips >= callers*each {
		t.Errorf("%d round trips for %d operations: nothing was batched", trips, callers*each)
	} else {
		t.Logf("%d operations in %d round trips", callers*each, trips)
	}
}
