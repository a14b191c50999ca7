package sandbox_test

import (
	"context"
	"sync"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// A budget of one byte keeps only the most recently used module: each Run
// of the other module evicts it, and the evicted one is loaded and compiled
// again (from the disk cache) when a task needs it.
func TestCompiledCacheEvicts(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{CompiledCacheBytes: 1})
	hello, echo := testmodules.WAT(t, "hello"), testmodules.Build(t, "echo")

	wantOutput(t, b.run(t, b.newJob(hello, "")), "hello from wat\n")
	wantOutput(t, b.run(t, b.newJob(hello, "")), "hello from wat\n")
	if s := b.engine.CacheStats(); s.Modules != 1 || s.Evictions != 0 || b.loads.Load() != 1 {
		t.Fatalf("after two runs of one module: %+v, %d loads", s, b.loads.Load())
	}
	wantOutput(t, b.run(t, b.newJob(echo, "x")), "x")
	if s := b.engine.CacheStats(); s.Modules != 1 || s.Evictions != 1 {
		t.Errorf("after a second module: %+v, want 1 module, 1 eviction", s)
	}
	wantOutput(t, b.run(t, b.newJob(hello, "")), "hello from wat\n")
	if got := b.loads.Load(); got != 3 {
		t.Errorf("Load called %d times, want 3 (hello again after its eviction)", got)
	}
	if s := b.engine.CacheStats(); s.Modules != 1 || s.Evictions != 2 {
		t.Errorf("at the end: %+v, want 1 module, 2 evictions", s)
	}
}

// A module a Run holds is not evicted; it goes when that Run ends.
func TestCompiledCacheKeepsModulesInUse(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{CompiledCacheBytes: 1})
	spin := b.newJob(testmodules.WAT(t, "spin"), "")
	spin.Timeout = 500 * time.Millisecond
	b.requireCompiled(t, spin)

	var wg sync.WaitGroup
	wg.Go(func() { b.run(t, spin) })
	time.Sleep(100 * time.Millisecond) // spin is running
	wantOutput(t, b.run(t, b.newJob(testmodules.WAT(t, "hello"), "")), "hello from wat\n")
	if s := b.engine.CacheStats(); s.Modules != 2 || s.Evictions != 0 {
		t.Errorf("while spin runs: %+v, want both modules kept", s)
	}
	wg.Wait()
	if s := b.engine.CacheStats(); s.Modules != 1 || s.Evictions != 1 {
		t.Errorf("after spin ended: %+v, want it evicted", s)
	}
}

// Evicting a reactor module closes its idle instances; the next task gets
// a fresh instance of the recompiled module.
func TestCompiledCacheEvictsIdleInstances(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{CompiledCacheBytes: 1})
	reactor := testmodules.WAT(t, "reactor")
	wantOutput(t, b.run(t, b.newJob(reactor, "e")), "e1")
	wantOutput(t, b.run(t, b.newJob(reactor, "e")), "e2")
	if got := b.engine.CacheStats().IdleInstances; got != 1 {
		t.Fatalf("idle instances = %d, want 1", got)
	}
	wantOutput(t, b.run(t, b.newJob(testmodules.WAT(t, "hello"), "")), "hello from wat\n")
	if s := b.engine.CacheStats(); s.IdleInstances != 0 || s.Evictions != 1 {
		t.Errorf("after eviction: %+v, want no idle instance", s)
	}
	wantOutput(t, b.run(t, b.newJob(reactor, "e")), "e1")
}

// Concurrent Runs of many modules under a small budget (-race).
func TestCompiledCacheConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{CompiledCacheBytes: 1})
	mods := [][]byte{testmodules.WAT(t, "hello"), testmodules.WAT(t, "reactor"), testmodules.C(t, "reactorecho"), testmodules.WAT(t, "fib")}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				wasm := mods[(g+i)%len(mods)]
				res := b.engine.Run(context.Background(), b.newJob(wasm, "e"))
				if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
					t.Errorf("outcome %s, error %v", res.Outcome, res.Error)
				}
			}
		})
	}
	wg.Wait()
	if s := b.engine.CacheStats(); s.Modules != 1 {
		t.Errorf("after the runs: %+v, want 1 module", s)
	}
}
