package sandbox

import (
	"sync"
	"time"
)

// poolKey identifies interchangeable reactor instances: one module under
// one memory limit (the limit is the instance's allocator, fixed at
// instantiation).
type poolKey struct {
	sha      string
	memoryMB int
}

// pool keeps idle reactor instances for reuse. It never closes an instance
// itself: every method that lets go of instances returns them, and the
// caller closes them without holding any lock (Engine.closeInstance).
//
// Bounds: at most perKey idle instances per poolKey (the oldest goes) and
// total in all (the least recently used goes). Instances in use are not in
// the pool: a Run owns its instance from get to put.
type pool struct {
	perKey, total int

	mu     sync.Mutex
	closed bool
	idle   map[poolKey][]*instance // per key, oldest first
	// lru is every idle instance, most recent at the front, threaded
	// through instance.lruPrev and lruNext (no allocation per put).
	lru lruList
}

// lruList is a doubly linked list of idle instances.
type lruList struct {
	front, back *instance
	n           int
}

func (l *lruList) pushFront(inst *instance) {
	inst.lruPrev, inst.lruNext = nil, l.front
	if l.front != nil {
		l.front.lruPrev = inst
	} else {
		l.back = inst
	}
	l.front = inst
	l.n++
}

func (l *lruList) remove(inst *instance) {
	if inst.lruPrev != nil {
		inst.lruPrev.lruNext = inst.lruNext
	} else {
		l.front = inst.lruNext
	}
	if inst.lruNext != nil {
		inst.lruNext.lruPrev = inst.lruPrev
	} else {
		l.back = inst.lruPrev
	}
	inst.lruPrev, inst.lruNext = nil, nil
	l.n--
}

func newPool(perKey, total int) *pool {
	return &pool{perKey: perKey, total: total, idle: map[poolKey][]*instance{}}
}

// get takes the most recently used idle instance of key, or returns nil.
func (p *pool) get(key poolKey) *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	idle := p.idle[key]
	if len(idle) == 0 {
		return nil
	}
	inst := idle[len(idle)-1]
	p.removeLocked(inst)
	return inst
}

// put makes inst idle and returns the instances the bounds push out
// (inst itself when the pool is closed).
func (p *pool) put(inst *instance) (out []*instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return []*instance{inst}
	}
	p.idle[inst.key] = append(p.idle[inst.key], inst)
	p.lru.pushFront(inst)
	inst.idleSince = time.Now()
	if idle := p.idle[inst.key]; len(idle) > p.perKey {
		out = append(out, idle[0])
		p.removeLocked(idle[0])
	}
	for p.lru.n > p.total {
		old := p.lru.back
		out = append(out, old)
		p.removeLocked(old)
	}
	return out
}

// expire takes the instances idle since before cutoff.
func (p *pool) expire(cutoff time.Time) (out []*instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for inst := p.lru.back; inst != nil; inst = p.lru.back {
		if !inst.idleSince.Before(cutoff) {
			break // the rest went idle later
		}
		out = append(out, inst)
		p.removeLocked(inst)
	}
	return out
}

// drop takes every idle instance of module sha (it was evicted).
func (p *pool) drop(sha string) (out []*instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, idle := range p.idle {
		if key.sha != sha {
			continue
		}
		for _, inst := range idle {
			p.lru.remove(inst)
		}
		out = append(out, idle...)
		delete(p.idle, key)
	}
	return out
}

// close takes every idle instance; instances put later are handed back.
func (p *pool) close() (out []*instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, idle := range p.idle {
		out = append(out, idle...)
	}
	for _, inst := range out {
		inst.lruPrev, inst.lruNext = nil, nil
	}
	p.idle = map[poolKey][]*instance{}
	p.lru = lruList{}
	return out
}

func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.n
}

func (p *pool) removeLocked(inst *instance) {
	p.lru.remove(inst)
	idle := p.idle[inst.key]
	for i, x := range idle {
		if x == inst {
			idle = append(idle[:i], idle[i+1:]...)
			break
		}
	}
	if len(idle) == 0 {
		delete(p.idle, inst.key)
	} else {
		p.idle[inst.key] = idle
	}
}
