package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"

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

	// closing is done when Close starts; it stops every running module.
	closing   context.Context
	closeRuns context.CancelFunc

	mu       sync.Mutex
	closed   bool
	compiled map[string]*compileCall
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
		compiled:  map[string]*compileCall{},
	}
	if m := r.Module(atfModule); m != nil {
		e.atf = m.ExportedFunctionDefinitions()
	}
	return e, nil
}

// Close stops every running module and frees all compiled code. Runs still
// in flight end with an error Result.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.compiled = map[string]*compileCall{}
	e.mu.Unlock()
	e.closeRuns()
	return errors.Join(e.runtime.Close(ctx), e.cache.Close(ctx))
}

var errClosed = errors.New("sandbox: engine closed")

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
