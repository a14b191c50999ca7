package sandbox

import (
	"container/list"
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
	lru    *list.List              // every idle instance, most recent at the front
}

func newPool(perKey, total int) *pool {
	return &pool{perKey: perKey, total: total, idle: map[poolKey][]*instance{}, lru: list.New()}
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
	inst.elem = p.lru.PushFront(inst)
	inst.idleSince = time.Now()
	if idle := p.idle[inst.key]; len(idle) > p.perKey {
		out = append(out, idle[0])
		p.removeLocked(idle[0])
	}
	for p.lru.Len() > p.total {
		old := p.lru.Back().Value.(*instance)
		out = append(out, old)
		p.removeLocked(old)
	}
	return out
}

// expire takes the instances idle since before cutoff.
func (p *pool) expire(cutoff time.Time) (out []*instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for e := p.lru.Back(); e != nil; e = p.lru.Back() {
		inst := e.Value.(*instance)
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
			p.lru.Remove(inst.elem)
			inst.elem = nil
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
	p.idle = map[poolKey][]*instance{}
	p.lru.Init()
	return out
}

func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

func (p *pool) removeLocked(inst *instance) {
	p.lru.Remove(inst.elem)
	inst.elem = nil
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
