package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/tetratelabs/wazero"
)

// compileCall is one compilation of one module, shared by every Run that
// asks for the same SHA-256 while it is in flight (single flight) and, on
// success, kept for later Runs.
type compileCall struct {
	done chan struct{}
	mod  wazero.CompiledModule
	err  error // *moduleError or *internalError
}

// moduleError is a problem with the module itself (bad bytes, not a
// command): ERROR_KIND_MODULE.
type moduleError struct{ msg string }

func (e *moduleError) Error() string { return e.msg }

// internalError is a host-side problem (load failed, engine closed):
// ERROR_KIND_INTERNAL.
type internalError struct{ msg string }

func (e *internalError) Error() string { return e.msg }

// compiledModule returns the compiled module for job.SHA256, loading and
// compiling it on first use. Failures are not cached: a later Run tries again.
func (e *Engine) compiledModule(ctx context.Context, job Job) (wazero.CompiledModule, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, &internalError{errClosed.Error()}
	}
	c, ok := e.compiled[job.SHA256]
	if !ok {
		c = &compileCall{done: make(chan struct{})}
		e.compiled[job.SHA256] = c
		e.mu.Unlock()
		// Compile with a context the first caller's cancellation does not
		// abort: others may be waiting for the same module.
		c.mod, c.err = e.loadAndCompile(context.WithoutCancel(ctx), job)
		if c.err != nil {
			e.mu.Lock()
			if e.compiled[job.SHA256] == c {
				delete(e.compiled, job.SHA256)
			}
			e.mu.Unlock()
		}
		close(c.done)
	} else {
		e.mu.Unlock()
	}
	select {
	case <-c.done:
		return c.mod, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (e *Engine) loadAndCompile(ctx context.Context, job Job) (wazero.CompiledModule, error) {
	if job.Load == nil {
		return nil, &internalError{fmt.Sprintf("module %s is not compiled and the job has no Load function", job.SHA256)}
	}
	wasm, err := job.Load(ctx)
	if err != nil {
		return nil, &internalError{fmt.Sprintf("load module %s: %v", job.SHA256, err)}
	}
	sum := sha256.Sum256(wasm)
	if got := hex.EncodeToString(sum[:]); got != job.SHA256 {
		return nil, &internalError{fmt.Sprintf("loaded module has sha256 %s, want %s", got, job.SHA256)}
	}
	if err := checkMagic(wasm); err != nil {
		return nil, &moduleError{err.Error()}
	}
	mod, err := e.compile(ctx, wasm)
	if err != nil {
		return nil, &moduleError{fmt.Sprintf("compile module: %v", err)}
	}
	return mod, nil
}

// keepCompiled makes mod the compiled module of sha256 unless one is known
// or being compiled; it reports whether it kept mod.
func (e *Engine) keepCompiled(sha256 string, mod wazero.CompiledModule) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	if _, ok := e.compiled[sha256]; ok {
		return false
	}
	c := &compileCall{done: make(chan struct{}), mod: mod}
	close(c.done)
	e.compiled[sha256] = c
	return true
}
