package sandbox

import (
	"sync"
	"unsafe"
)

// runSet holds the run contexts of the Runs in flight, so that Close can
// stop them all. It is sharded: every Run adds and removes itself, and
// with one lock (or a context.AfterFunc on one shared context, which
// locks that context) hundreds of concurrent Runs queued on it. Each shard
// is a list threaded through the run contexts (runContext.prev, next), so
// adding and removing allocate nothing.
type runSet struct {
	shards [16]struct {
		mu   sync.Mutex
		head *runContext
		_    [48]byte // a shard per cache line
	}
}

func (s *runSet) shard(rc *runContext) int {
	return int(uintptr(unsafe.Pointer(rc))>>6) % len(s.shards)
}

// add registers rc; remove(rc) forgets it.
func (s *runSet) add(rc *runContext) {
	sh := &s.shards[s.shard(rc)]
	sh.mu.Lock()
	rc.prev, rc.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = rc
	}
	sh.head = rc
	sh.mu.Unlock()
}

// remove forgets rc, which add registered.
func (s *runSet) remove(rc *runContext) {
	sh := &s.shards[s.shard(rc)]
	sh.mu.Lock()
	if rc.prev != nil {
		rc.prev.next = rc.next
	} else {
		sh.head = rc.next
	}
	if rc.next != nil {
		rc.next.prev = rc.prev
	}
	rc.prev, rc.next = nil, nil
	sh.mu.Unlock()
}

// stopAll stops every registered run with cause.
func (s *runSet) stopAll(cause error) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for rc := sh.head; rc != nil; rc = rc.next {
			rc.Stop(cause)
		}
		sh.mu.Unlock()
	}
}
