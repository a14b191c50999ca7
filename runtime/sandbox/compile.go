package sandbox

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// The compiled-module cache.
//
// A module is compiled once per SHA-256 however many Runs ask for it at the
// same time (single flight), and kept in an LRU bounded by an estimate of
// the memory its compiled code takes (Config.CompiledCacheBytes). Runs in
// flight and live reactor instances hold a reference; an entry is evicted
// only while no Run uses it, its idle reactor instances are then closed,
// and its wazero.CompiledModule is closed when the last reference goes. An
// evicted module is compiled again by the next Run that needs it, from
// wazero's on-disk cache when Config.CompilationCacheDir is set.
//
//	       acquire (refs+1, runs+1)              release (refs-1, runs-1)
//	miss ─► compiling ─► cached (LRU front) ─► … ─► evicted ─► refs=0 ─► Close
//	           │ error: removed, not cached         (LRU back, runs=0, over budget)

// compiledSizeFactor turns a module's size into an estimate of its compiled
// size: wazero's native code (~3.5x the .wasm for Go modules, measured with
// /proc/self/smaps) plus its heap metadata (~1.5x). runtime/RATIONALE.md.
const compiledSizeFactor = 5

// compiled is one compilation of one module, shared by every Run that asks
// for the same SHA-256 while it is in flight and, on success, kept for
// later Runs.
type compiled struct {
	sha  string
	done chan struct{} // closed when mod, err, abi and abiErr are set
	mod  wazero.CompiledModule
	err  error // *moduleError or *internalError
	abi  atfv1.Abi
	// abiErr is why a module that is neither a command nor a reactor cannot
	// run.
	abiErr error

	// Guarded by Engine.mu.
	size int64 // estimated bytes, counted in Engine.cachedBytes while elem != nil
	refs int   // Runs holding it plus live reactor instances of it
	runs int   // Runs holding it: it is not evicted while > 0
	// evicted: no longer in Engine.compiled; Close at refs == 0. Set under
	// Engine.mu, read without it (Engine.evicted).
	evicted atomic.Bool
	elem    *list.Element
}

// moduleError is a problem with the module itself (bad bytes, not a
// command): ERROR_KIND_MODULE.
type moduleError struct{ msg string }

func (e *moduleError) Error() string { return e.msg }

// internalError is a host-side problem (load failed, engine closed):
// ERROR_KIND_INTERNAL.
type internalError struct{ msg string }

func (e *internalError) Error() string { return e.msg }

// acquire returns the compiled module for job.SHA256, loading and compiling
// it on first use, with a reference the caller gives back with
// release(c, true). Failures are not cached: a later Run tries again.
func (e *Engine) acquire(ctx context.Context, job Job) (*compiled, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, &internalError{errClosed.Error()}
	}
	c, ok := e.compiled[job.SHA256]
	if !ok {
		c = &compiled{sha: job.SHA256, done: make(chan struct{})}
		e.compiled[job.SHA256] = c
	}
	c.refs++
	c.runs++
	if c.elem != nil {
		e.lru.MoveToFront(c.elem)
	}
	e.mu.Unlock()

	if !ok {
		// Compile with a context the first caller's cancellation does not
		// abort: others may be waiting for the same module.
		mod, size, err := e.loadAndCompile(context.WithoutCancel(ctx), job)
		e.finishCompile(c, mod, size, err)
	}
	select {
	case <-c.done:
		if c.err != nil {
			e.release(c, true)
			return nil, c.err
		}
		return c, nil
	case <-ctx.Done():
		e.release(c, true)
		return nil, ctx.Err()
	}
}

// finishCompile publishes the outcome of c's compilation and caches it.
func (e *Engine) finishCompile(c *compiled, mod wazero.CompiledModule, size int64, err error) {
	if err == nil {
		c.abi, c.abiErr = moduleABI(mod)
	}
	e.mu.Lock()
	c.mod, c.err = mod, err
	var drop []string
	switch {
	case err != nil:
		if e.compiled[c.sha] == c {
			delete(e.compiled, c.sha)
		}
	case e.closed || e.compiled[c.sha] != c:
		c.evicted.Store(true) // runtime.Close frees it, or the last release does
	default:
		drop = e.cacheLocked(c, size)
	}
	close(c.done)
	e.mu.Unlock()
	e.dropInstances(drop)
}

// cacheLocked puts the compiled c at the front of the LRU and evicts what
// goes over the budget; it returns the evicted SHA-256s, whose idle reactor
// instances the caller closes (dropInstances) without holding e.mu.
func (e *Engine) cacheLocked(c *compiled, size int64) []string {
	c.size = size
	c.elem = e.lru.PushFront(c)
	e.cachedBytes += size
	return e.evictLocked()
}

// evictLocked evicts least recently used modules that no Run holds until
// the estimate fits Config.CompiledCacheBytes. The most recently used one
// is always kept, so a module larger than the budget still runs without
// being compiled for every task.
func (e *Engine) evictLocked() []string {
	var evicted []string
	for el := e.lru.Back(); el != nil && e.cachedBytes > e.cfg.CompiledCacheBytes && el != e.lru.Front(); {
		c := el.Value.(*compiled)
		prev := el.Prev()
		if c.runs == 0 {
			e.lru.Remove(el)
			c.elem = nil
			e.cachedBytes -= c.size
			c.evicted.Store(true)
			delete(e.compiled, c.sha)
			e.evictions++
			evicted = append(evicted, c.sha)
			if c.refs == 0 {
				e.closeCompiledLocked(c)
			}
		}
		el = prev
	}
	return evicted
}

// closeCompiledLocked closes an evicted module nothing holds any more.
func (e *Engine) closeCompiledLocked(c *compiled) {
	if c.mod != nil && !e.closed {
		// CompiledModule.Close only drops wazero's reference count; it
		// does not block.
		_ = c.mod.Close(context.Background())
	}
	c.mod = nil
}

// release gives back a reference taken by acquire (run) or held by a
// reactor instance (!run).
func (e *Engine) release(c *compiled, run bool) {
	e.mu.Lock()
	c.refs--
	var drop []string
	if run {
		c.runs--
		if c.runs == 0 && e.cachedBytes > e.cfg.CompiledCacheBytes {
			drop = e.evictLocked()
		}
	}
	if c.refs == 0 && c.evicted.Load() {
		e.closeCompiledLocked(c)
	}
	e.mu.Unlock()
	e.dropInstances(drop)
}

// dropInstances closes the idle reactor instances of evicted modules.
func (e *Engine) dropInstances(shas []string) {
	for _, sha := range shas {
		for _, inst := range e.pool.drop(sha) {
			e.closeInstance(inst)
		}
	}
}

func (e *Engine) loadAndCompile(ctx context.Context, job Job) (wazero.CompiledModule, int64, error) {
	if job.Load == nil {
		return nil, 0, &internalError{fmt.Sprintf("module %s is not compiled and the job has no Load function", job.SHA256)}
	}
	wasm, err := job.Load(ctx)
	if err != nil {
		return nil, 0, &internalError{fmt.Sprintf("load module %s: %v", job.SHA256, err)}
	}
	sum := sha256.Sum256(wasm)
	if got := hex.EncodeToString(sum[:]); got != job.SHA256 {
		return nil, 0, &internalError{fmt.Sprintf("loaded module has sha256 %s, want %s", got, job.SHA256)}
	}
	if err := checkMagic(wasm); err != nil {
		return nil, 0, &moduleError{err.Error()}
	}
	mod, err := e.compile(ctx, wasm)
	if err != nil {
		return nil, 0, &moduleError{fmt.Sprintf("compile module: %v", err)}
	}
	return mod, compiledSize(wasm), nil
}

// compiledSize estimates the memory wasm takes once compiled.
func compiledSize(wasm []byte) int64 { return int64(len(wasm)) * compiledSizeFactor }

// keepCompiled makes mod the compiled module of sha256 unless one is known
// or being compiled; it reports whether it kept mod.
func (e *Engine) keepCompiled(sha256 string, mod wazero.CompiledModule, size int64) bool {
	abi, abiErr := moduleABI(mod)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return false
	}
	if _, ok := e.compiled[sha256]; ok {
		e.mu.Unlock()
		return false
	}
	c := &compiled{sha: sha256, done: make(chan struct{}), mod: mod, abi: abi, abiErr: abiErr}
	close(c.done)
	e.compiled[sha256] = c
	drop := e.cacheLocked(c, size)
	e.mu.Unlock()
	e.dropInstances(drop)
	return true
}

// CacheStats describes the compiled-module cache, for tests and metrics.
type CacheStats struct {
	// Modules is how many compiled modules are cached; Bytes their
	// estimated size.
	Modules int
	Bytes   int64
	// Evictions counts modules evicted since New.
	Evictions int64
	// IdleInstances is how many reactor instances wait in the pool.
	IdleInstances int
}

// CacheStats returns the current state of the compiled-module cache and
// the reactor pool.
func (e *Engine) CacheStats() CacheStats {
	e.mu.Lock()
	s := CacheStats{Modules: e.lru.Len(), Bytes: e.cachedBytes, Evictions: e.evictions}
	e.mu.Unlock()
	s.IdleInstances = e.pool.idleCount()
	return s
}
