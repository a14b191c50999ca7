// Package autobatch gathers the calls that many goroutines make at about
// the same time into shared batches (natural batching), without a
// background goroutine or a timer.
package autobatch

import (
	"context"
	"sync"
)

// Batcher runs items from many goroutines in shared batches: a caller
// queues its item, and whichever caller holds one of a few flush tokens
// runs everything queued at that moment in one flush.
// Alone, a caller runs its own item at once; under load, hundreds share a
// flush. There is no background goroutine: callers do the flushing.
type Batcher[T any] struct {
	// flush runs a batch; it leaves each item's outcome in the item.
	flush  func(ctx context.Context, items []T)
	tokens chan struct{}

	mu      sync.Mutex
	pending []*batchOp[T]
}

// batchOp is one caller's item.
type batchOp[T any] struct {
	item T
	done chan struct{} // closed once it has run
}

// maxFlushers bounds the flushes in flight at once.
const maxFlushers = 4

// maxBatch bounds the items in one flush.
const maxBatch = 512

// New returns a Batcher whose batches flush runs; flush leaves each item's
// outcome in the item.
func New[T any](flush func(ctx context.Context, items []T)) *Batcher[T] {
	p := &Batcher[T]{flush: flush, tokens: make(chan struct{}, maxFlushers)}
	for range maxFlushers {
		p.tokens <- struct{}{}
	}
	return p
}

// Do runs item in some flush and returns when it has run; the caller then
// reads its outcome from the item. ctx only bounds the wait of a caller
// whose item someone else is running.
func (p *Batcher[T]) Do(ctx context.Context, item T) error {
	op := &batchOp[T]{item: item, done: make(chan struct{})}
	p.mu.Lock()
	p.pending = append(p.pending, op)
	p.mu.Unlock()
	select {
	case <-op.done:
		return nil
	case <-p.tokens:
	case <-ctx.Done():
		return ctx.Err()
	}
	// We hold a token: flush what is pending, ours included unless another
	// flusher took it already.
	for {
		p.mu.Lock()
		n := min(len(p.pending), maxBatch)
		batch := p.pending[:n:n]
		p.pending = p.pending[n:]
		p.mu.Unlock()
		if n == 0 {
			break
		}
		p.run(ctx, batch)
		select {
		case <-op.done:
			p.tokens <- struct{}{}
			return nil
		default: // ours is in another flusher's batch, or still pending
		}
	}
	p.tokens <- struct{}{}
	select {
	case <-op.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Batcher[T]) run(ctx context.Context, batch []*batchOp[T]) {
	// The batch is everyone's: one caller going away must not cancel it.
	ctx = context.WithoutCancel(ctx)
	items := make([]T, len(batch))
	for i, op := range batch {
		items[i] = op.item
	}
	p.flush(ctx, items)
	for _, op := range batch {
		close(op.done)
	}
}
