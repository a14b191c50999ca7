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
	// MaxOutputBytes caps stdout; default 1 MiB. Exceeding it stops the
	// module: FATAL, ERROR_KIND_OUTPUT_LIMIT.
	MaxOutputBytes int
	// StderrTailBytes is how much of the end of stderr is kept for the
	// error; default 4 KiB.
	StderrTailBytes int
}

const (
	defaultMaxOutputBytes  = 1 << 20
	defaultStderrTailBytes = 4 << 10
)

func (c Config) withDefaults() Config {
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = defaultMaxOutputBytes
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
	rcfg := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true) // see timeout.go
	r := wazero.NewRuntimeWithConfig(ctx, rcfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		_ = r.Close(ctx)
		_ = cache.Close(ctx)
		return nil, fmt.Errorf("sandbox: instantiate WASI: %w", err)
	}
	return &Engine{
		cfg:      cfg,
		cache:    cache,
		runtime:  r,
		wasi:     r.Module(wasiModule).ExportedFunctionDefinitions(),
		compiled: map[string]*compileCall{},
	}, nil
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
	return errors.Join(e.runtime.Close(ctx), e.cache.Close(ctx))
}

var errClosed = errors.New("sandbox: engine closed")
