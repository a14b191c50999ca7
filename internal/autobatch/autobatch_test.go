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
	// Hold all four flush tokens.
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
