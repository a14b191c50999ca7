package sandbox

import (
	"sync"
	"unsafe"
)

// runSet holds the run contexts of the Runs in flight, so that Close can
// stop them all. It is sharded: every Run adds and removes itself, and
// with one lock (or a context.AfterFunc on one shared context, which
// locks that context) hundreds of concurrent Runs queued on it.
type runSet struct {
	shards [16]struct {
		mu   sync.Mutex
		runs map[*runContext]struct{}
		_    [48]byte // a shard per cache line
	}
}

func (s *runSet) shard(rc *runContext) int {
	return int(uintptr(unsafe.Pointer(rc))>>6) % len(s.shards)
}

// add registers rc and returns the function that removes it.
func (s *runSet) add(rc *runContext) (remove func()) {
	sh := &s.shards[s.shard(rc)]
	sh.mu.Lock()
	if sh.runs == nil {
		sh.runs = map[*runContext]struct{}{}
	}
	sh.runs[rc] = struct{}{}
	sh.mu.Unlock()
	return func() {
		sh.mu.Lock()
		delete(sh.runs, rc)
		sh.mu.Unlock()
	}
}

// stopAll stops every registered run with cause.
func (s *runSet) stopAll(cause error) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for rc := range sh.runs {
			rc.Stop(cause)
		}
		sh.mu.Unlock()
	}
}
