package sandbox

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// How a running module is stopped from outside.
//
// Every module is instrumented before it is compiled (instrument.go): each
// loop head and function entry tests an exported global, $stop, and traps
// when it is set. The run context is done on any of three events, told
// apart by context.Cause:
//
//   - the job's timeout passed          → errTimeout
//   - stdout went over MaxOutputBytes   → errOutputLimit (writer.go)
//   - stderr went over MaxLogBytes      → errLogLimit (writer.go)
//   - the caller cancelled its context  → the caller's cause
//
// and a context.AfterFunc (no goroutine until it fires) then sets $stop, so
// the module traps within one loop iteration. wazero's own
// WithCloseOnContextDone did the same by calling into Go at every loop
// back-edge, which made CPU-bound modules ~8x slower (runtime/RATIONALE.md).
//
// A module blocked in a host function is not at a loop head: WASI sleeps
// (poll_oneoff) use runContext.sleep, which returns when the run context is
// done, and atf_v1 host functions get the run context and must return when
// it is done. For one that ignores it, callGuest gives up on the module
// abandonAfter after the run context is done: Run returns (timeout,
// cancelled …) and the instance is closed whenever the host function
// returns. The sandbox cannot stop a Go function; until it returns, its
// goroutine and the instance's memory stay allocated.

var (
	errTimeout     = errors.New("sandbox: timeout")
	errOutputLimit = errors.New("sandbox: output limit")
	errLogLimit    = errors.New("sandbox: log limit")
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

// sleep is the guest's nanosleep (WASI poll_oneoff on a clock): it returns
// early when the run context is done, so the module reaches a loop head.
func (r *runContext) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Done():
	}
}

// guard holds an instance's instrumentation globals.
type guard struct {
	stop   api.MutableGlobal
	budget api.Global
}

func newGuard(mod api.Module) (guard, error) {
	stop, ok1 := mod.ExportedGlobal(stopExport).(api.MutableGlobal)
	budget := mod.ExportedGlobal(budgetExport)
	if !ok1 || budget == nil {
		return guard{}, errors.New("module is not instrumented")
	}
	return guard{stop: stop, budget: budget}, nil
}

// arm sets $stop once ctx is done, until the returned disarm is called;
// after disarm returns, $stop is not written any more.
func (g guard) arm(ctx context.Context) (disarm func()) {
	var mu sync.Mutex
	disarmed := false
	cancel := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !disarmed {
			g.stop.Set(1)
		}
	})
	return func() {
		if cancel() {
			return // never ran
		}
		mu.Lock()
		disarmed = true
		mu.Unlock()
	}
}

// stackExhausted reports whether the module ran out of call-stack budget.
// Call it only when no guest code runs.
func (g guard) stackExhausted() bool { return int32(uint32(g.budget.Get())) < 0 }

// reset prepares a reused instance for its next call: $stop cleared (a stop
// may have fired just as the last call returned) and $budget full.
func (g guard) reset(budget int32) {
	g.stop.Set(0)
	if b, ok := g.budget.(api.MutableGlobal); ok {
		b.Set(uint64(uint32(budget)))
	}
}

// abandonAfter is how long callGuest waits, once the run context is done,
// for the module to stop. An instrumented module stops within milliseconds
// at its next loop head or call; one that has not is blocked in a host
// function that does not return. The margin is for a loaded machine, where
// the goroutine that sets $stop and the guest's thread wait their turn for
// a CPU (250 ms was seen to abandon a plain spinning loop under the race
// detector with parallel tests).
const abandonAfter = 500 * time.Millisecond

// callGuest runs call, which calls into the module, on its own goroutine,
// and returns its error. When ctx is done and call has not returned
// abandonAfter later, callGuest returns abandoned = true at once and leaves
// call running; then, and only then, finish runs on call's goroutine once
// call returns (it closes the instance).
//
// cpu, when not nil, gets the CPU time call used (the goroutine is locked
// to its thread meanwhile, and the thread's CPU clock read around it); it
// is set before callGuest returns unless abandoned.
func callGuest(ctx context.Context, call func() error, finish func(), cpu *time.Duration) (err error, abandoned bool) {
	var (
		mu       sync.Mutex
		returned bool
		gaveUp   bool
	)
	done := make(chan error, 1)
	goGuest(func() {
		runtime.LockOSThread()
		c0, ok0 := threadCPU()
		err := call()
		c1, ok1 := threadCPU()
		runtime.UnlockOSThread()
		mu.Lock()
		returned = true
		g := gaveUp
		if !g && ok0 && ok1 && cpu != nil { // abandoned: the caller has moved on
			*cpu = c1 - c0
		}
		mu.Unlock()
		if g {
			finish()
			return
		}
		done <- err
	})
	select {
	case err := <-done:
		return err, false
	case <-ctx.Done():
	}
	t := time.NewTimer(abandonAfter)
	defer t.Stop()
	select {
	case err := <-done:
		return err, false
	case <-t.C:
	}
	mu.Lock()
	if returned {
		mu.Unlock()
		return <-done, false
	}
	gaveUp = true
	mu.Unlock()
	return nil, true
}

// goGuest runs f on a pooled goroutine. Calls into a module need a deep Go
// stack (wazero's entry, host functions); a new goroutine per task would
// grow one again, copying, every time.
func goGuest(f func()) {
	select {
	case w := <-idleGuestWorkers:
		w <- f
	default:
		go guestWorker(f)
	}
}

// idleGuestWorkers holds parked workers, each waiting on its own channel;
// one finding the pool full exits instead.
var idleGuestWorkers = make(chan chan func(), 256)

func guestWorker(f func()) {
	w := make(chan func())
	for {
		f()
		select {
		case idleGuestWorkers <- w:
		default:
			return
		}
		f = <-w
	}
}
