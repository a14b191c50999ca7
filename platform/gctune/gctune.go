// Package gctune keeps the Go garbage collector's heap goal at least a
// fixed headroom above the live heap.
//
// With GOGC=100 the heap goal is twice the live heap. atf's processes keep
// a small live heap (a few MiB) and allocate fast (tens of KiB per task),
// so at GOGC=100 they collect dozens of times a second, and every cycle
// scans the stacks of hundreds of goroutines (one per execution slot, one
// per pooled guest call) and slows every task running while it marks. A
// headroom of tens of MiB makes cycles rare while the heap is small; once
// the live heap is larger than the headroom, the base percentage (GOGC=100)
// applies unchanged, so a process with large lambdas is not made to grow
// further than it would by default.
package gctune

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// DefaultHeadroom is the heap growth allowed between collections while the
// live heap is smaller than it.
const DefaultHeadroom = 64 << 20

// DefaultEvery is how often the live heap is read.
const DefaultEvery = 100 * time.Millisecond

const liveMetric = "/gc/heap/live:bytes"

// Start adjusts the GC percentage every period so that the heap goal is at
// least live + headroom, never below base percent; it returns a stop
// function that ends the adjusting goroutine, waits for it and restores
// base. A headroom of 0 does nothing.
func Start(ctx context.Context, base int, headroom uint64, every time.Duration) (stop func()) {
	if headroom == 0 || base <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		sample := []metrics.Sample{{Name: liveMetric}}
		current := -1
		for {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				if p := Percent(base, headroom, sample[0].Value.Uint64()); p != current {
					debug.SetGCPercent(p)
					current = p
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
		debug.SetGCPercent(base)
	}
}

// Percent is the GC percentage that puts the heap goal headroom above a
// live heap of live bytes, at least base, rounded so that small changes of
// the live heap do not change it (to within 1/8 of its value).
func Percent(base int, headroom, live uint64) int {
	if live == 0 {
		return base
	}
	p := headroom * 100 / live
	if p <= uint64(base) {
		return base
	}
	p = min(p, 1<<20) // a tiny live heap (just started): keep it an int
	// Keep the 4 most significant bits: the percentage moves in steps of
	// at most 1/8, so a live heap that wobbles does not reset it each tick.
	shift := 0
	for p>>shift >= 16 {
		shift++
	}
	return max(base, int(p>>shift<<shift))
}
