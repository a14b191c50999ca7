package sandbox

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// A run context nobody asked for a Done channel ends the same ways as one
// with its layer (TestRunContext): its timeout, Stop, release and the
// caller's cancellation read the same in Err and Cause before the layer
// exists, and in Done, context.Cause and derived contexts after it is
// built late.
func TestRunContextWithoutLayer(t *testing.T) {
	job := Job{Timeout: 20 * time.Millisecond}
	layered := func(rc *runContext) bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return rc.layer != nil
	}
	// check reads rc as a host function would after the end: Done closed,
	// Err, context.Cause, and a derived context's.
	check := func(t *testing.T, rc *runContext, wantErr, wantCause, wantCtxCause error) {
		t.Helper()
		if !errors.Is(rc.Err(), wantErr) || rc.Cause() != wantCause {
			t.Errorf("before the layer: Err() = %v, Cause() = %v, want %v, %v", rc.Err(), rc.Cause(), wantErr, wantCause)
		}
		if layered(rc) {
			t.Fatal("Err or Cause built the layer")
		}
		if got := context.Cause(rc); got != wantCtxCause {
			t.Errorf("context.Cause = %v, want %v", got, wantCtxCause)
		}
		select {
		case <-rc.Done():
		default:
			t.Error("Done not closed")
		}
		child, cancel := context.WithCancel(rc)
		defer cancel()
		<-child.Done()
		if !errors.Is(child.Err(), wantErr) || context.Cause(child) != wantCtxCause {
			t.Errorf("derived: Err() = %v, Cause = %v", child.Err(), context.Cause(child))
		}
		if !errors.Is(rc.Err(), wantErr) || rc.Cause() != wantCause {
			t.Errorf("after the layer: Err() = %v, Cause() = %v", rc.Err(), rc.Cause())
		}
	}

	t.Run("timeout", func(t *testing.T) {
		rc := newRunContext(context.Background(), job)
		defer rc.release()
		for rc.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		rc.Stop(errOutputLimit) // too late
		check(t, rc, context.DeadlineExceeded, errTimeout, errTimeout)
	})
	t.Run("stop", func(t *testing.T) {
		rc := newRunContext(context.Background(), job)
		defer rc.release()
		rc.Stop(errOutputLimit)
		rc.Stop(errClosed)
		time.Sleep(2 * job.Timeout) // the timer does not change the cause
		check(t, rc, context.Canceled, errOutputLimit, context.Canceled)
	})
	t.Run("caller cancels", func(t *testing.T) {
		cause := errors.New("claim lost")
		ctx, cancel := context.WithCancelCause(context.Background())
		rc := newRunContext(ctx, job)
		defer rc.release()
		cancel(cause)
		time.Sleep(2 * job.Timeout) // the timer does not change the cause
		check(t, rc, context.Canceled, cause, cause)
	})
	t.Run("release", func(t *testing.T) {
		rc := newRunContext(context.Background(), job)
		rc.release()
		check(t, rc, context.Canceled, context.Canceled, context.Canceled)
	})
	t.Run("caller's earlier deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		rc := newRunContext(ctx, Job{Timeout: time.Minute})
		defer rc.release()
		if d, _ := ctx.Deadline(); !rc.deadlineIs(d) {
			t.Error("Deadline is not the caller's earlier one")
		}
		for rc.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		check(t, rc, context.DeadlineExceeded, context.DeadlineExceeded, context.DeadlineExceeded)
	})
}

func (r *runContext) deadlineIs(d time.Time) bool {
	got, ok := r.Deadline()
	return ok && got.Equal(d)
}

// A pooled timer that fires late, for a run before, does not end the run
// it times now.
func TestRunTimerLateFire(t *testing.T) {
	rc := newRunContext(context.Background(), Job{Timeout: time.Minute})
	defer rc.release()
	rc.timer.fire()
	if rc.Err() != nil {
		t.Fatalf("a fire before the deadline ended the run: %v", rc.Cause())
	}
}

// callGuest is told when the run context ends, with or without its layer,
// and not by what the call before left behind.
func TestCallGuestWake(t *testing.T) {
	spin := func(stop *stopGlobal) func() error {
		return func() error {
			for !stop.set.Load() {
				time.Sleep(time.Millisecond)
			}
			return errors.New("trapped")
		}
	}
	for _, tc := range []struct {
		name string
		end  func(rc *runContext, cancel context.CancelCauseFunc)
	}{
		{"timeout", func(*runContext, context.CancelCauseFunc) {}},
		{"stop", func(rc *runContext, _ context.CancelCauseFunc) { rc.Stop(errOutputLimit) }},
		{"caller cancels", func(_ *runContext, cancel context.CancelCauseFunc) { cancel(errors.New("claim lost")) }},
		{"layer, timeout", func(rc *runContext, _ context.CancelCauseFunc) { rc.Done() }},
		{"layer, stop", func(rc *runContext, _ context.CancelCauseFunc) { rc.Done(); rc.Stop(errOutputLimit) }},
		{"layer, caller cancels", func(rc *runContext, cancel context.CancelCauseFunc) {
			rc.Done()
			cancel(errors.New("claim lost"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			rc := newRunContext(ctx, Job{Timeout: 50 * time.Millisecond})
			defer rc.release()
			stop := &stopGlobal{}
			c := newGuestCall(spin(stop), func() {})
			go func() {
				time.Sleep(5 * time.Millisecond)
				tc.end(rc, cancel)
			}()
			err, _, abandoned := callGuest(rc, c, guard{stop: stop})
			if err == nil || abandoned || rc.Err() == nil {
				t.Errorf("err %v, abandoned %v, run context's Err %v", err, abandoned, rc.Err())
			}
		})
	}
	t.Run("stale", func(t *testing.T) {
		stop := &stopGlobal{}
		c := newGuestCall(func() error { time.Sleep(10 * time.Millisecond); return nil }, func() {})
		c.wake <- struct{}{} // as the end of a run just after its call returned leaves it
		rc := newRunContext(context.Background(), Job{Timeout: time.Minute})
		defer rc.release()
		err, _, abandoned := callGuest(rc, c, guard{stop: stop})
		if err != nil || abandoned || stop.set.Load() {
			t.Errorf("err %v, abandoned %v, $stop set %v: the last run's wake stopped this one", err, abandoned, stop.set.Load())
		}
	})
}

// stopGlobal stands for an instance's $stop.
type stopGlobal struct {
	api.MutableGlobal // nil: only Set is called
	set               atomic.Bool
}

func (g *stopGlobal) Set(v uint64) { g.set.Store(v != 0) }

// A reactor task's Run, under a context the caller can cancel (as the
// executor's), builds no context layer: 7 allocations with a
// context.WithTimeoutCause layer, 2 without; nor an environment map from
// the job's Vars when the module asks for none (2 more).
func TestReactorRunAllocs(t *testing.T) {
	wasm := watText(t, `(module
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "atf_handle") (param i32) (result i32) (i32.const 0)))`)
	e, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	job := wasmJob(wasm, time.Minute)
	job.Vars = Vars{TaskID: "t", Lambda: "l", Attempt: "1", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	ctx, cancel := context.WithCancelCause(context.Background()) // as the executor's
	defer cancel(nil)
	run := func() {
		if res := e.Run(ctx, job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("%s %v", res.Outcome, res.Error)
		}
	}
	run()
	if n := testing.AllocsPerRun(200, run); n > 3 {
		t.Errorf("%.1f allocations per Run, want <= 3", n)
	}
}
