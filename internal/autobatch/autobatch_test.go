package autobatch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type item struct {
	caller, n int
	got       int // set by the flush
}

// TestBatcher: every caller's item runs exactly once, each caller reads its
// own outcome once Do returns, and callers at the same time share flushes.
func TestBatcher(t *testing.T) {
	var flushes, ran atomic.Int64
	seen := sync.Map{}
	b := New(func(ctx context.Context, items []*item) {
		flushes.Add(1)
		time.Sleep(100 * time.Microsecond) // a round trip
		for _, it := range items {
			if _, dup := seen.LoadOrStore([2]int{it.caller, it.n}, true); dup {
				t.Errorf("item %d of caller %d ran twice", it.n, it.caller)
			}
			it.got = it.caller*1000 + it.n
			ran.Add(1)
		}
	})
	const callers, each = 64, 50
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for n := range each {
				it := &item{caller: c, n: n}
				if err := b.Do(t.Context(), it); err != nil {
					t.Error(err)
					return
				}
				if it.got != c*1000+n {
					t.Errorf("caller %d item %d: outcome %d", c, n, it.got)
					return
				}
			}
		})
	}
	wg.Wait()
	if ran.Load() != callers*each {
		t.Fatalf("%d items ran, want %d", ran.Load(), callers*each)
	}
	if f := flushes.Load(); f >= callers*each/2 {
		t.Errorf("%d flushes for %d items: little was batched", f, callers*each)
	} else {
		t.Logf("%d items in %d flushes", callers*each, f)
	}
}

// TestBatcherContext: a caller whose context ends while its item waits for
// a flush gets the context's error; its item runs with the next caller's.
func TestBatcherContext(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	b := New(func(ctx context.Context, items []*item) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		for _, it := range items {
			it.got = 1
		}
	})
	// Hold every flush token.
	var wg sync.WaitGroup
	for range maxFlushers {
		wg.Go(func() { _ = b.Do(context.Background(), &item{}) })
		<-started
	}
	ctx, cancel := context.WithCancel(context.Background())
	late := &item{}
	done := make(chan error, 1)
	go func() { done <- b.Do(ctx, late) }()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Do after cancel: %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	next := &item{}
	if err := b.Do(context.Background(), next); err != nil || next.got != 1 || late.got != 1 {
		t.Fatalf("next Do: %v; its item ran: %v, the earlier caller's: %v", err, next.got == 1, late.got == 1)
	}
}

// TestBatcherAloneAllocs: a caller alone (nothing queued, a token free)
// runs its item at once in a batch of its own, allocating nothing: no op,
// no channel, no items slice, no context (the flushers' buffers are
// reused).
func TestBatcherAloneAllocs(t *testing.T) {
	var sizes []int
	b := New(func(ctx context.Context, items []*item) {
		sizes = append(sizes, len(items))
		for _, it := range items {
			it.got++
		}
	})
	it := &item{}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if err := b.Do(ctx, it); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Do alone, want 0", allocs)
	}
	if it.got != 101 { // AllocsPerRun runs once more to warm up
		t.Errorf("item ran %d times, want 101", it.got)
	}
	for _, n := range sizes {
		if n != 1 {
			t.Fatalf("batch sizes %v, want all 1", sizes)
		}
	}
}

// TestBatcherReuse: ops and buffers are reused between batches, yet no
// flush sees an item of an earlier one, and a caller that gave up (its op
// still queued, told later) does not disturb the callers after it.
func TestBatcherReuse(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	b := New(func(ctx context.Context, items []*item) {
		if len(items) == 1 && items[0].n < 0 {
			<-release // the blocker: hold the token
		}
		ns := make([]int, len(items))
		for i, it := range items {
			ns[i] = it.n
			it.got++
		}
		mu.Lock()
		batches = append(batches, ns)
		mu.Unlock()
	})
	for round := range 20 {
		// Hold every token, queue callers (one of which gives up), then
		// let them all through.
		var hold, wg sync.WaitGroup
		for range maxFlushers {
			hold.Go(func() { _ = b.Do(context.Background(), &item{n: -1}) })
		}
		for len(b.tokens) > 0 {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithCancel(context.Background())
		quitter := &item{n: 100000 + round}
		quit := make(chan error, 1)
		go func() { quit <- b.Do(ctx, quitter) }()
		items := make([]*item, 8)
		for i := range items {
			items[i] = &item{n: round*100 + i}
			wg.Go(func() {
				if err := b.Do(context.Background(), items[i]); err != nil {
					t.Error(err)
				}
			})
		}
		for {
			b.mu.Lock()
			n := len(b.pending)
			b.mu.Unlock()
			if n == len(items)+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-quit; err != context.Canceled {
			t.Fatalf("round %d: the quitter got %v", round, err)
		}
		for range maxFlushers {
			release <- struct{}{}
		}
		hold.Wait()
		wg.Wait()
		for i, it := range items {
			if it.got != 1 {
				t.Fatalf("round %d: item %d ran %d times", round, i, it.got)
			}
		}
	}
	seen := map[int]bool{}
	for _, ns := range batches {
		for _, n := range ns {
			if n >= 0 && seen[n] {
				t.Fatalf("item %d in two batches: %v", n, batches)
			}
			seen[n] = true
		}
	}
	for round := range 20 {
		if !seen[100000+round] {
			t.Errorf("the quitter of round %d never ran", round)
		}
	}
}

// BenchmarkDo: one caller alone (every Do a batch of one), and callers on
// every P at once, with a flush that costs next to nothing.
func BenchmarkDo(b *testing.B) {
	flush := func(ctx context.Context, items []*item) {
		for _, it := range items {
			it.got++
		}
	}
	b.Run("alone", func(b *testing.B) {
		p := New(flush)
		it := &item{}
		b.ReportAllocs()
		for b.Loop() {
			_ = p.Do(context.Background(), it)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		p := New(flush)
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			it := &item{}
			for pb.Next() {
				_ = p.Do(context.Background(), it)
			}
		})
	})
	// A flush that waits ~50 µs, as for a round trip: items queue and
	// share flushes.
	b.Run("queued", func(b *testing.B) {
		var flushes, items atomic.Int64
		p := New(func(ctx context.Context, its []*item) {
			flushes.Add(1)
			items.Add(int64(len(its)))
			time.Sleep(50 * time.Microsecond)
			flush(ctx, its)
		})
		b.ReportAllocs()
		b.SetParallelism(64)
		b.RunParallel(func(pb *testing.PB) {
			it := &item{}
			for pb.Next() {
				_ = p.Do(context.Background(), it)
			}
		})
		b.ReportMetric(float64(items.Load())/float64(flushes.Load()), "items/flush")
	})
}
