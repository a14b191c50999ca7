package sandbox

import (
	"context"
	"errors"
	"time"
)

// How a running module is stopped from outside.
//
// The Engine's runtime is built WithCloseOnContextDone(true): wazero checks
// the context at function entries and loop back-edges and, once it is done,
// closes the module; the call returns a *sys.ExitError. The run context below
// is done on any of three events, told apart by context.Cause:
//
//   - the job's timeout passed          → errTimeout
//   - stdout went over MaxOutputBytes   → errOutputLimit (writer.go)
//   - the caller cancelled its context  → the caller's cause
//
// A later issue replaces the per-call watcher goroutine with something
// cheaper; only this file should need to change.

var (
	errTimeout     = errors.New("sandbox: timeout")
	errOutputLimit = errors.New("sandbox: output limit")
)

// runContext is the context one module instance runs under.
type runContext struct {
	context.Context
	stop    context.CancelCauseFunc
	release context.CancelFunc
}

// newRunContext derives the run context from the caller's. A timeout <= 0
// sets no time limit of its own.
func newRunContext(parent context.Context, timeout time.Duration) *runContext {
	ctx, stop := context.WithCancelCause(parent)
	release := func() { stop(nil) }
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, errTimeout)
		release = func() { cancel(); stop(nil) }
	}
	return &runContext{Context: ctx, stop: stop, release: release}
}

// Stop ends the run with cause.
func (r *runContext) Stop(cause error) { r.stop(cause) }

// Cause returns why the run context is done, or nil.
func (r *runContext) Cause() error {
	if r.Err() == nil {
		return nil
	}
	return context.Cause(r.Context)
}
