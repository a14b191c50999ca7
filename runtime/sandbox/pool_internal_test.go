package sandbox

import (
	"slices"
	"testing"
	"time"
)

func TestPoolBounds(t *testing.T) {
	p := newPool(2, 3)
	a, b := poolKey{sha: "a", memoryMB: 64}, poolKey{sha: "b", memoryMB: 64}
	inst := func(k poolKey) *instance { return &instance{key: k} }
	a1, a2, a3 := inst(a), inst(a), inst(a)
	b1, b2 := inst(b), inst(b)

	if out := p.put(a1); len(out) != 0 {
		t.Fatalf("put a1: pushed out %d", len(out))
	}
	p.put(a2)
	if out := p.put(a3); !slices.Equal(out, []*instance{a1}) {
		t.Errorf("third idle of a: pushed out %v, want the oldest (a1)", out)
	}
	p.put(b1)
	if out := p.put(b2); !slices.Equal(out, []*instance{a2}) {
		t.Errorf("fourth idle in all: pushed out %v, want the least recently used (a2)", out)
	}
	if got := p.get(a); got != a3 {
		t.Errorf("get a = %p, want a3 %p", got, a3)
	}
	if got := p.get(a); got != nil {
		t.Errorf("get a again = %p, want nil", got)
	}
	if got := p.get(poolKey{sha: "b", memoryMB: 32}); got != nil {
		t.Error("another memory limit shares instances")
	}
	if got := p.get(b); got != b2 {
		t.Errorf("get b = %p, want the most recent, b2 %p", got, b2)
	}
	p.put(b2)
	if out := p.drop("b"); len(out) != 2 || p.idleCount() != 0 {
		t.Errorf("drop b: %d out, %d idle left", len(out), p.idleCount())
	}
	p.put(a3)
	if out := p.close(); !slices.Equal(out, []*instance{a3}) {
		t.Errorf("close: %v", out)
	}
	if out := p.put(a1); !slices.Equal(out, []*instance{a1}) {
		t.Errorf("put after close: %v, want it handed back", out)
	}
}

func TestPoolExpire(t *testing.T) {
	p := newPool(8, 8)
	k := poolKey{sha: "a", memoryMB: 64}
	insts := make([]*instance, 4)
	now := time.Now()
	for i := range insts {
		insts[i] = &instance{key: k}
		p.put(insts[i])
		insts[i].idleSince = now.Add(time.Duration(i) * time.Second)
	}
	if out := p.expire(now.Add(1500 * time.Millisecond)); !slices.Equal(out, insts[:2]) {
		t.Errorf("expire: %v, want the two idle longest %v", out, insts[:2])
	}
	if p.idleCount() != 2 {
		t.Errorf("%d idle left, want 2", p.idleCount())
	}
	if got := p.get(k); got != insts[3] {
		t.Errorf("get = %p, want the most recent %p", got, insts[3])
	}
	if out := p.expire(now.Add(time.Hour)); !slices.Equal(out, insts[2:3]) {
		t.Errorf("expire all: %v, want %v", out, insts[2:3])
	}
	if p.idleCount() != 0 || p.lru.front != nil || p.lru.back != nil {
		t.Errorf("pool not empty: %d idle", p.idleCount())
	}
}
