package store

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// autoPipe sends commands from many goroutines in shared pipelines
// (natural batching): a caller queues its commands, and whichever caller
// holds one of a few flush tokens sends everything queued at that moment
// in one round trip. Alone, a caller sends its own commands at once; under
// load, hundreds share a round trip. There is no background goroutine:
// callers do the flushing.
type autoPipe struct {
	rdb    redis.UniversalClient
	tokens chan struct{}

	mu      sync.Mutex
	pending []*pipeOp
}

// pipeOp is one caller's commands.
type pipeOp struct {
	add  func(pipe redis.Pipeliner) // queues the caller's commands
	done chan struct{}              // closed once they have run
}

// maxFlushers bounds the pipelines in flight at once.
const maxFlushers = 4

// maxBatch bounds the ops in one pipeline.
const maxBatch = 512

func newAutoPipe(rdb redis.UniversalClient) *autoPipe {
	p := &autoPipe{rdb: rdb, tokens: make(chan struct{}, maxFlushers)}
	for range maxFlushers {
		p.tokens <- struct{}{}
	}
	return p
}

// do runs add's commands in some pipeline and returns when they have run;
// the caller then reads its commands' results. Per-command errors are the
// caller's to read; ctx only bounds the wait of a caller whose commands
// someone else is sending.
func (p *autoPipe) do(ctx context.Context, add func(pipe redis.Pipeliner)) error {
	op := &pipeOp{add: add, done: make(chan struct{})}
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
		p.flush(ctx, batch)
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

func (p *autoPipe) flush(ctx context.Context, batch []*pipeOp) {
	// The batch is everyone's: one caller going away must not cancel it.
	ctx = context.WithoutCancel(ctx)
	pipe := p.rdb.Pipeline()
	for _, op := range batch {
		op.add(pipe)
	}
	_, _ = pipe.Exec(ctx) // errors are per command, read by each caller
	for _, op := range batch {
		close(op.done)
	}
}
