package sandbox

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Config configures an Engine. The zero value is usable.
type Config struct {
	// CompilationCacheDir, when set, holds wazero's on-disk compilation
	// cache, so a restarted executor does not compile known modules again.
	// Default: an in-memory cache.
	CompilationCacheDir string
	// MaxOutputBytes caps stdout; default 1 MiB; Job.MaxOutputBytes
	// overrides it. Exceeding it stops the
	// module: FATAL, ERROR_KIND_OUTPUT_LIMIT.
	MaxOutputBytes int
	// MaxLogBytes caps what a module may write to stderr; Job.MaxLogBytes
	// overrides it. Exceeding it stops the module: FATAL,
	// ERROR_KIND_OUTPUT_LIMIT, limit "max_log_bytes=N". Only a tail of
	// stderr is ever kept (StderrTailBytes), so this bounds time spent
	// logging, not memory. Default 16 MiB.
	MaxLogBytes int
	// StderrTailBytes is how much of the end of stderr is kept for the
	// error; default 4 KiB.
	StderrTailBytes int
	// MaxStackBytes bounds the guest's call stack, which wazero keeps on
	// the Go heap outside the memory limit (up to 400 MB per instance
	// otherwise). Exceeding it traps: FATAL ERROR_KIND_TRAP, limit
	// "max_stack_bytes=N". It is counted in frame weights (instrument.go),
	// so it is an estimate within a small factor. Default 8 MiB.
	MaxStackBytes int
	// KeepInspected keeps the module Inspect compiled for later Runs, so
	// the first task after a deploy does not compile it again when the
	// frontend and the executor share the Engine (atf dev). Off by
	// default: a frontend-only Engine would keep every deployed module.
	KeepInspected bool
	// HostModules register host modules (atf_v1) on the Engine's runtime.
	// New calls each once, after wasi_snapshot_preview1, before any module
	// is compiled. Their functions reach the running Job's Host value with
	// [HostFrom](ctx). Default: none, and Inspect accepts any atf_v1
	// function import unchecked (it fails when a task instantiates it).
	HostModules []HostModule
	// CompiledCacheBytes bounds the compiled modules kept in memory, by an
	// estimate of 5x the module's size (compile.go); least recently used
	// modules no Run holds are evicted past it and compiled again (from
	// CompilationCacheDir when set) when a task needs them. The most
	// recently used module is always kept. Default 256 MiB (about 20 Go
	// modules of 2.5 MB).
	CompiledCacheBytes int64

	// ReactorMaxUses is how many tasks a reactor instance serves before it
	// is closed and a fresh one instantiated (a bound on leaks the guest
	// carries from task to task). Default 1000.
	ReactorMaxUses int
	// ReactorIdlePerModule bounds the idle reactor instances kept per
	// (module, memory_mb); default 8, the executor's default slot count.
	ReactorIdlePerModule int
	// ReactorIdleTotal bounds the idle reactor instances kept in all; the
	// least recently used goes first. Default 32. Instances in use are
	// bounded by the Runs in flight, not by the pool.
	ReactorIdleTotal int
	// ReactorIdleTimeout closes a reactor instance idle for longer (within
	// a quarter of it), so that an executor whose hot lambda went quiet
	// gives back the instances' memory. Default 1 minute.
	ReactorIdleTimeout time.Duration
}

// HostModule registers one host module on r, typically
// r.NewHostModuleBuilder("atf_v1")….Instantiate(ctx). It must not keep
// per-task state: that belongs in Job.Host.
type HostModule func(ctx context.Context, r wazero.Runtime) error

const (
	defaultMaxOutputBytes  = 1 << 20
	defaultStderrTailBytes = 4 << 10
	defaultMaxStackBytes   = 8 << 20
	defaultMaxLogBytes     = 16 << 20

	defaultCompiledCacheBytes   = 256 << 20
	defaultReactorMaxUses       = 1000
	defaultReactorIdlePerModule = 8
	defaultReactorIdleTotal     = 32
	defaultReactorIdleTimeout   = time.Minute
)

func (c Config) withDefaults() Config {
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = defaultMaxOutputBytes
	}
	if c.MaxLogBytes <= 0 {
		c.MaxLogBytes = defaultMaxLogBytes
	}
	if c.MaxStackBytes <= 0 {
		c.MaxStackBytes = defaultMaxStackBytes
	}
	if c.StderrTailBytes <= 0 {
		c.StderrTailBytes = defaultStderrTailBytes
	}
	if c.CompiledCacheBytes <= 0 {
		c.CompiledCacheBytes = defaultCompiledCacheBytes
	}
	if c.ReactorMaxUses <= 0 {
		c.ReactorMaxUses = defaultReactorMaxUses
	}
	if c.ReactorIdlePerModule <= 0 {
		c.ReactorIdlePerModule = defaultReactorIdlePerModule
	}
	if c.ReactorIdleTotal <= 0 {
		c.ReactorIdleTotal = defaultReactorIdleTotal
	}
	if c.ReactorIdleTimeout <= 0 {
		c.ReactorIdleTimeout = defaultReactorIdleTimeout
	}
	return c
}

// Engine validates and runs lambda modules. It is safe for concurrent use.
//
// One wazero.Runtime serves every memory limit: the limit is enforced per
// instance by a memory allocator (limits.go), so a module is compiled once
// per SHA-256, whatever MemoryMB its tasks ask for.
type Engine struct {
	cfg     Config
	cache   wazero.CompilationCache
	runtime wazero.Runtime
	// wasi holds the signature of every function of the
	// wasi_snapshot_preview1 host module, for Inspect.
	wasi map[string]api.FunctionDefinition
	// atf is the same for the atf_v1 host module, nil when no HostModule
	// registered one.
	atf map[string]api.FunctionDefinition

	// closing is done when Close starts; then it and runs stop every
	// running module.
	closing   context.Context
	runs      runSet
	closeRuns context.CancelFunc

	// pool holds idle reactor instances (pool.go); the janitor closes
	// those idle past ReactorIdleTimeout, until Close.
	pool    *pool
	janitor sync.WaitGroup
	// inflight counts Runs past their closed check; Close waits for them
	// before it closes the runtime under them.
	inflight sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	compiled map[string]*compiled // cached or being compiled, by SHA-256
	// lru orders the cached modules, most recently used at the front;
	// cachedBytes is the sum of their estimated sizes.
	lru         *list.List
	cachedBytes int64
	evictions   int64
}

// New returns an Engine with the WASI preview 1 host module ready.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	var cache wazero.CompilationCache
	if cfg.CompilationCacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.CompilationCacheDir)
		if err != nil {
			return nil, fmt.Errorf("sandbox: compilation cache in %s: %w", cfg.CompilationCacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	// No WithCloseOnContextDone: modules are instrumented to stop
	// themselves (timeout.go, instrument.go).
	rcfg := wazero.NewRuntimeConfig().WithCompilationCache(cache)
	r := wazero.NewRuntimeWithConfig(ctx, rcfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		_ = r.Close(ctx)
		_ = cache.Close(ctx)
		return nil, fmt.Errorf("sandbox: instantiate WASI: %w", err)
	}
	for _, register := range cfg.HostModules {
		if err := register(ctx, r); err != nil {
			_ = r.Close(ctx)
			_ = cache.Close(ctx)
			return nil, fmt.Errorf("sandbox: register host module: %w", err)
		}
	}
	closing, closeRuns := context.WithCancel(context.Background())
	e := &Engine{
		closing:   closing,
		closeRuns: closeRuns,
		cfg:       cfg,
		cache:     cache,
		runtime:   r,
		wasi:      r.Module(wasiModule).ExportedFunctionDefinitions(),
		compiled:  map[string]*compiled{},
		lru:       list.New(),
		pool:      newPool(cfg.ReactorIdlePerModule, cfg.ReactorIdleTotal),
	}
	if m := r.Module(atfModule); m != nil {
		e.atf = m.ExportedFunctionDefinitions()
	}
	e.janitor.Go(e.expireIdle)
	return e, nil
}

// expireIdle closes the reactor instances idle past ReactorIdleTimeout,
// looking every quarter of it, until Close begins.
func (e *Engine) expireIdle() {
	t := time.NewTicker(e.cfg.ReactorIdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-e.closing.Done():
			return
		case now := <-t.C:
			for _, inst := range e.pool.expire(now.Add(-e.cfg.ReactorIdleTimeout)) {
				e.closeInstance(inst)
			}
		}
	}
}

// Close stops every running module, waits for the Runs in flight to end
// (until ctx is done, 10 s at most), closes the pooled reactor instances and frees all
// compiled code. Runs still in flight end with an error Result.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.compiled = map[string]*compiled{}
	e.lru.Init()
	e.cachedBytes = 0
	e.mu.Unlock()
	e.closeRuns()
	e.runs.stopAll(errClosed)
	e.janitor.Wait()
	for _, inst := range e.pool.close() {
		e.closeInstance(inst)
	}
	// Runs stop within milliseconds ($stop); one blocked in a host function
	// that ignores its context is cut short by runtime.Close after ctx, or
	// after closeWait at most.
	stopped := make(chan struct{})
	go func() { // ends when the last Run does
		e.inflight.Wait()
		close(stopped)
	}()
	wait := time.NewTimer(closeWait)
	defer wait.Stop()
	select {
	case <-stopped:
	case <-ctx.Done():
	case <-wait.C:
	}
	return errors.Join(e.runtime.Close(ctx), e.cache.Close(ctx))
}

var errClosed = errors.New("sandbox: engine closed")

// closeWait bounds how long Close waits for Runs in flight to stop.
const closeWait = 10 * time.Second

// enter counts a Run in flight unless the Engine is closed; the Run calls
// e.inflight.Done when it ends.
func (e *Engine) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.inflight.Add(1)
	return true
}

// stackBudget is the initial $budget of instrumented modules.
func (e *Engine) stackBudget() int32 {
	return int32(min(e.cfg.MaxStackBytes/stackUnitBytes, 1<<30))
}

// compile instruments wasm and compiles it.
func (e *Engine) compile(ctx context.Context, wasm []byte) (wazero.CompiledModule, error) {
	ins, err := instrument(wasm, e.stackBudget())
	if err != nil {
		return nil, err
	}
	return e.runtime.CompileModule(ctx, ins.wasm)
}

// track registers a Run's context so that Close stops it; the Run calls
// e.runs.remove(rc) when it ends. A Run registered as Close begins is
// stopped here: Close cancels closing before it stops the registered
// runs.
func (e *Engine) track(rc *runContext) {
	e.runs.add(rc)
	if e.closing.Err() != nil {
		rc.Stop(errClosed)
	}
}
