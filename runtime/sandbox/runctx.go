package sandbox

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// runContext is the context one module instance runs under: the caller's
// context with the job's time limit, and the job's values for host
// functions (HostFrom, TaskEnv), answered by Value without a
// context.WithValue layer each.
//
// It behaves as one context.WithTimeoutCause(parent, timeout, errTimeout)
// layer (context.WithCancel when the job has no timeout) whose cancel is
// Stop, but builds that layer only when something needs it: its Done
// channel (a WASI sleep, a host function waiting on it, a context derived
// from it, context.AfterFunc) or context.Cause of it. Until then — for
// most runs, to their end — the time limit is a pooled timer and the
// caller's cancellation is read from the caller's context, and callGuest
// learns that the run ended from wake, not from a channel of the run
// context. The layer cost ~1.5 µs and five allocations per task (a
// timer, its closure, the context, its channel, and the caller's
// context's map of children it joined).
//
// Either way:
//
//   - Err is context.DeadlineExceeded after the timeout, context.Canceled
//     after Stop or release, the caller's Err once the caller's context
//     is done — whichever came first — and nil before;
//   - Cause (the method) gives the first Stop's cause, errTimeout, or the
//     caller's cause;
//   - context.Cause of the run context, and of a context derived from it,
//     gives errTimeout or the caller's cause, but context.Canceled after
//     Stop (the recorded causes are the sandbox's own, unexported);
//   - Deadline is the earlier of the job's and the caller's.
type runContext struct {
	parent   context.Context
	deadline time.Time // the job's time limit; zero: none

	host any // Job.Host, nil: none
	// env is the job's environment (TaskEnv): Job.Env, or built from
	// vars, Job.Vars, by the first taskEnv, under mu. vars is zero when
	// Job.Env is set (it wins) or neither is.
	env  map[string]string
	vars Vars

	mu sync.Mutex
	// err and cause are how the run ended while it had no layer: the
	// timeout (DeadlineExceeded, errTimeout) or release (Canceled,
	// Canceled); Stop sets err too. Once there is a layer, its Err and
	// context.Cause take over.
	err, cause error
	stopped    error              // the first Stop's cause
	layer      context.Context    // the standard layer, once built
	cancel     context.CancelFunc // the layer's
	timer      *runTimer          // the time limit while there is no layer; nil: none
	wake       chan<- struct{}    // callGuest's, told when the run ends; nil: none

	// stdout and stderr are the run's (newRunState), kept here to save
	// an allocation each.
	stdout outputWriter
	stderr tailWriter

	// prev and next link it in its runSet shard (runs.go).
	prev, next *runContext
}

// newRunContext derives the run context of job from the caller's. A
// timeout <= 0 sets no time limit of its own.
func newRunContext(parent context.Context, job Job) *runContext {
	rc := &runContext{parent: parent, host: job.Host, env: job.Env}
	if job.Env == nil {
		rc.vars = job.Vars
	}
	if job.Timeout > 0 {
		rc.deadline = time.Now().Add(job.Timeout)
		rc.timer = runTimers.Get().(*runTimer)
		rc.timer.rc.Store(rc)
		rc.timer.t.Reset(job.Timeout)
	}
	if cancelCtxKey == nil { // the probe failed (a future context package): no laziness
		rc.withLayer()
	}
	return rc
}

// runTimer is a reusable timer that ends a run context at its deadline.
// A fire that comes late — the timer was stopped as it fired, and may time
// another run by now — finds the deadline of the run it reaches not passed
// and does nothing (expire).
type runTimer struct {
	t  *time.Timer
	rc atomic.Pointer[runContext]
}

var runTimers = sync.Pool{New: func() any {
	rt := &runTimer{}
	rt.t = time.AfterFunc(time.Hour, rt.fire)
	rt.t.Stop()
	return rt
}}

func (rt *runTimer) fire() {
	if rc := rt.rc.Load(); rc != nil {
		rc.expire()
	}
}

// stopTimer gives the timer back to the pool; r.mu is held.
func (r *runContext) stopTimer() {
	if r.timer == nil {
		return
	}
	r.timer.t.Stop()
	r.timer.rc.Store(nil)
	runTimers.Put(r.timer)
	r.timer = nil
}

// expire ends the run with the timeout, unless it has ended already or its
// deadline has not come (a late fire of a reused timer).
func (r *runContext) expire() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.layer != nil || r.errLocked() != nil || time.Now().Before(r.deadline) {
		return
	}
	r.err, r.cause = context.DeadlineExceeded, errTimeout
	r.notify()
}

// release frees the run context's resources (its timer); the run context
// is done afterwards.
func (r *runContext) release() {
	r.mu.Lock()
	r.stopTimer()
	if r.layer == nil && r.errLocked() == nil {
		r.err, r.cause = context.Canceled, context.Canceled
	}
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Stop ends the run with cause, unless it has ended already.
func (r *runContext) Stop(cause error) {
	r.mu.Lock()
	if r.errLocked() != nil || r.stopped != nil {
		r.mu.Unlock()
		return
	}
	r.stopped = cause
	cancel := r.cancel
	if r.layer == nil {
		r.err = context.Canceled
		r.notify()
	}
	r.mu.Unlock()
	if cancel != nil {
		cancel() // the layer's AfterFunc tells callGuest
	}
}

// Cause returns why the run context is done, or nil.
func (r *runContext) Cause() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.errLocked() == nil:
		return nil
	case r.stopped != nil:
		return r.stopped
	case r.layer != nil:
		return context.Cause(r.layer)
	case r.err != nil:
		return r.cause
	}
	return context.Cause(r.parent)
}

// errLocked is Err; r.mu is held.
func (r *runContext) errLocked() error {
	switch {
	case r.layer != nil:
		return r.layer.Err()
	case r.err != nil:
		return r.err
	}
	return r.parent.Err()
}

// notify tells callGuest, if it waits, that the run ended; r.mu is held
// (callGuest clears wake under it, so that a later call on the same
// guestCall is never told about this run).
func (r *runContext) notify() {
	if r.wake != nil {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// setWake makes w (nil: none) the channel told when the run ends, and
// tells it at once when the run has ended already.
func (r *runContext) setWake(w chan<- struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wake = w
	if r.errLocked() != nil {
		r.notify()
	}
}

// withLayer builds the standard layer unless it exists, and returns it.
func (r *runContext) withLayer() context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.layer != nil {
		return r.layer
	}
	switch {
	case r.err == context.Canceled: // stopped or released: done, whatever the time
		r.layer, r.cancel = context.WithCancel(r.parent)
		r.cancel()
	case r.deadline.IsZero():
		r.layer, r.cancel = context.WithCancel(r.parent)
	default:
		// Done already by the timeout: the deadline has passed, so the
		// layer is done with DeadlineExceeded and errTimeout at once.
		r.layer, r.cancel = context.WithDeadlineCause(r.parent, r.deadline, errTimeout)
	}
	r.stopTimer() // the layer keeps the time from now on
	context.AfterFunc(r.layer, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.notify()
	})
	return r.layer
}

// Deadline is the earlier of the job's and the caller's.
func (r *runContext) Deadline() (time.Time, bool) {
	d, ok := r.parent.Deadline()
	if !r.deadline.IsZero() && (!ok || r.deadline.Before(d)) {
		return r.deadline, true
	}
	return d, ok
}

// Done is the layer's channel.
func (r *runContext) Done() <-chan struct{} { return r.withLayer().Done() }

// Err is context.DeadlineExceeded, context.Canceled or the caller's Err
// once the run has ended, and nil before.
func (r *runContext) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errLocked()
}

// Value answers HostFrom and TaskEnv (host.go) with the job's values, the
// context package's question for the nearest cancellation (context.Cause,
// a derived context joining its parent) with the layer, and asks the
// caller's context for the rest.
func (r *runContext) Value(key any) any {
	switch key.(type) {
	case hostKey:
		if r.host != nil {
			return r.host
		}
	case envKey:
		if env := r.taskEnv(); env != nil {
			return env
		}
	}
	if key == cancelCtxKey {
		return r.withLayer().Value(key)
	}
	return r.parent.Value(key)
}

func (r *runContext) String() string { return "sandbox.runContext" }

// taskEnv is the job's environment, nil when it has none; built from
// Job.Vars on first use (most reactor tasks never ask).
func (r *runContext) taskEnv() map[string]string {
	if r.vars == (Vars{}) {
		return r.env // Job.Env, or none: never written
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.env == nil {
		r.env = r.vars.env()
	}
	return r.env
}

// cancelCtxKey is the key with which the context package asks a context
// for its nearest cancelCtx (context.Cause, and a derived context looking
// for a parent to join), found by asking context.Cause once.
var cancelCtxKey = func() any {
	var p keyProbe
	_ = context.Cause(&p)
	return p.key
}()

type keyProbe struct {
	context.Context // nil: only Err and Value are called
	key             any
}

func (p *keyProbe) Err() error { return context.Canceled }

func (p *keyProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}
