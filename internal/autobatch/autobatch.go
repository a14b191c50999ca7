// Package autobatch gathers the calls that many goroutines make at about
// the same time into shared batches (natural batching), without a
// background goroutine or a timer.
package autobatch

import (
	"context"
	"sync"
)

// Batcher runs items from many goroutines in shared batches: a caller
// queues its item, and whichever caller holds a flush token (maxFlushers)
// runs everything queued at that moment in one flush.
// Alone, a caller runs its own item at once; under load, hundreds share a
// flush. There is no background goroutine: callers do the flushing.
//
// A caller that finds nothing queued and a token free runs its item at
// once without queueing it: no op, no channel, no select. That is the
// common case for the first item after a flush (a batch of one), whose
// bookkeeping cost more than a flush of a cheap item.
type Batcher[T any] struct {
	// flush runs a batch; it leaves each item's outcome in the item.
	flush func(ctx context.Context, items []T)
	// tokens are the flush tokens; each carries its flusher's buffers.
	tokens chan *flusher[T]
	ops    sync.Pool // of *batchOp[T], with their channels

	mu      sync.Mutex
	pending []*batchOp[T]
}

// flusher is a flush token and the buffers its holder reuses for every
// batch it runs (flush must not keep items after it returns).
type flusher[T any] struct {
	ops   []*batchOp[T]
	items []T
}

// batchOp is one queued caller's item.
type batchOp[T any] struct {
	item T
	// done is told once, when the item has run (buffered: the flusher
	// never waits). Only its caller receives from it, and recycles the op
	// after it has; a caller that gave up (ctx) leaves the op to the GC.
	done chan struct{}
}

// maxFlushers bounds the flushes in flight at once. One: while a flush is
// in flight the next batch gathers, and fewer, larger batches cost fewer
// round trips and script calls — on atf's CPU-bound 2-core benchmarks,
// one flusher against four (the ninth session, alternated rounds): one
// Schedule per task median 12,144 vs 10,721 tasks/s (9 runs each), a
// separate executor with 8 slots 1,942-2,100 vs 1,697-1,707, ScheduleBatch
// no worse (5 of 6 rounds faster), pickup and lateness p99 unchanged.
const maxFlushers = 1

// maxBatch bounds the items in one flush.
const maxBatch = 512

// New returns a Batcher whose batches flush runs; flush leaves each item's
// outcome in the item and must not keep the items slice after it returns.
func New[T any](flush func(ctx context.Context, items []T)) *Batcher[T] {
	p := &Batcher[T]{flush: flush, tokens: make(chan *flusher[T], maxFlushers)}
	p.ops.New = func() any { return &batchOp[T]{done: make(chan struct{}, 1)} }
	for range maxFlushers {
		p.tokens <- &flusher[T]{}
	}
	return p
}

// Do runs item in some flush and returns when it has run; the caller then
// reads its outcome from the item. ctx only bounds the wait of a caller
// whose item someone else is running.
func (p *Batcher[T]) Do(ctx context.Context, item T) error {
	p.mu.Lock()
	if len(p.pending) == 0 {
		select {
		case f := <-p.tokens:
			// Nothing queued and a token free: run item alone, now. Items
			// queued meanwhile wait for this token (or another) as usual.
			p.mu.Unlock()
			f.items = append(f.items, item)
			p.run(ctx, f)
			p.tokens <- f
			return nil
		default:
		}
	}
	op := p.ops.Get().(*batchOp[T])
	op.item = item
	p.pending = append(p.pending, op)
	p.mu.Unlock()
	select {
	case <-op.done:
		p.recycle(op)
		return nil
	case f := <-p.tokens:
		// We hold a token: flush what is pending, ours included unless
		// another flusher took it already.
		for p.take(f) {
			p.run(ctx, f)
			select {
			case <-op.done:
				p.tokens <- f
				p.recycle(op)
				return nil
			default: // ours is in another flusher's batch, or still pending
			}
		}
		p.tokens <- f
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-op.done:
		p.recycle(op)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// take moves up to maxBatch pending ops into f's batch and reports
// whether there were any.
func (p *Batcher[T]) take(f *flusher[T]) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := min(len(p.pending), maxBatch)
	if n == len(p.pending) {
		f.ops, p.pending = p.pending, f.ops[:0]
	} else {
		f.ops = append(f.ops[:0], p.pending[:n]...)
		m := copy(p.pending, p.pending[n:])
		clear(p.pending[m:])
		p.pending = p.pending[:m]
	}
	for _, op := range f.ops {
		f.items = append(f.items, op.item)
	}
	return n > 0
}

// run flushes f's items and tells their queued callers. It leaves f's
// buffers empty, holding no item.
func (p *Batcher[T]) run(ctx context.Context, f *flusher[T]) {
	// The batch is everyone's: one caller going away must not cancel it.
	if ctx.Done() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	p.flush(ctx, f.items)
	clear(f.items)
	f.items = f.items[:0]
	for _, op := range f.ops {
		op.done <- struct{}{} // the op is its caller's again from here
	}
	clear(f.ops)
	f.ops = f.ops[:0]
}

// recycle keeps op, whose done its caller has received, for another Do.
func (p *Batcher[T]) recycle(op *batchOp[T]) {
	var zero T
	op.item = zero
	p.ops.Put(op)
}
