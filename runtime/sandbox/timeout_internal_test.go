package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

type parentKey struct{}

// The run context is one context layer with the job's values: a timeout
// reads as context.DeadlineExceeded (on it and on what a host function
// derives from it), Cause tells the sandbox's causes apart, the first
// cause stays, and the caller's values and cancellation reach it.
func TestRunContext(t *testing.T) {
	parent := context.WithValue(context.Background(), parentKey{}, "p")
	job := Job{Timeout: 20 * time.Millisecond, Host: "host", Env: map[string]string{"ATF_TASK_ID": "t"}}

	t.Run("timeout", func(t *testing.T) {
		rc := newRunContext(parent, job)
		defer rc.release()
		if rc.Cause() != nil || rc.Err() != nil {
			t.Fatalf("fresh run context done: %v", rc.Cause())
		}
		if d, ok := rc.Deadline(); !ok || time.Until(d) > job.Timeout {
			t.Errorf("Deadline() = %v, %v", d, ok)
		}
		child, cancel := context.WithCancel(rc)
		defer cancel()
		<-rc.Done()
		rc.Stop(errOutputLimit) // too late: the timeout stays the cause
		if !errors.Is(rc.Err(), context.DeadlineExceeded) || rc.Cause() != errTimeout {
			t.Errorf("Err() = %v, Cause() = %v, want deadline exceeded, errTimeout", rc.Err(), rc.Cause())
		}
		<-child.Done()
		if !errors.Is(child.Err(), context.DeadlineExceeded) || context.Cause(child) != errTimeout {
			t.Errorf("derived: Err() = %v, Cause = %v", child.Err(), context.Cause(child))
		}
	})
	t.Run("stop", func(t *testing.T) {
		rc := newRunContext(parent, job)
		defer rc.release()
		child, cancel := context.WithCancel(rc)
		defer cancel()
		rc.Stop(errOutputLimit)
		rc.Stop(errClosed)
		if !errors.Is(rc.Err(), context.Canceled) || rc.Cause() != errOutputLimit {
			t.Errorf("Err() = %v, Cause() = %v, want canceled, errOutputLimit", rc.Err(), rc.Cause())
		}
		<-child.Done()
		time.Sleep(2 * job.Timeout) // the timer does not change the cause
		if rc.Cause() != errOutputLimit {
			t.Errorf("Cause() = %v after the timeout, want errOutputLimit", rc.Cause())
		}
	})
	t.Run("caller cancels", func(t *testing.T) {
		cause := errors.New("claim lost")
		ctx, cancel := context.WithCancelCause(parent)
		rc := newRunContext(ctx, Job{}) // no time limit
		defer rc.release()
		if _, ok := rc.Deadline(); ok {
			t.Error("a job without a timeout has a deadline")
		}
		cancel(cause)
		<-rc.Done()
		if rc.Cause() != cause || !errors.Is(rc.Err(), context.Canceled) {
			t.Errorf("Err() = %v, Cause() = %v, want canceled, the caller's cause", rc.Err(), rc.Cause())
		}
	})
	t.Run("values", func(t *testing.T) {
		rc := newRunContext(parent, job)
		defer rc.release()
		child, cancel := context.WithTimeout(rc, time.Minute)
		defer cancel()
		for _, ctx := range []context.Context{rc, child} {
			if HostFrom(ctx) != "host" || TaskEnv(ctx)["ATF_TASK_ID"] != "t" || ctx.Value(parentKey{}) != "p" {
				t.Errorf("HostFrom %v, TaskEnv %v, caller's value %v", HostFrom(ctx), TaskEnv(ctx), ctx.Value(parentKey{}))
			}
		}
		// A nested Run (a host function running a job without Host or
		// Env) sees the outer job's, as with one context.WithValue each.
		inner := newRunContext(rc, Job{})
		defer inner.release()
		if HostFrom(inner) != "host" || TaskEnv(inner)["ATF_TASK_ID"] != "t" {
			t.Errorf("nested: HostFrom %v, TaskEnv %v", HostFrom(inner), TaskEnv(inner))
		}
	})
}

// runSet keeps the runs added and not removed, whatever the order.
func TestRunSet(t *testing.T) {
	var s runSet
	rcs := make([]*runContext, 100)
	for i := range rcs {
		rcs[i] = newRunContext(context.Background(), Job{})
		defer rcs[i].release()
		s.add(rcs[i])
	}
	for i, rc := range rcs {
		if i%3 != 0 {
			s.remove(rc)
		}
	}
	s.stopAll(errClosed)
	for i, rc := range rcs {
		if stopped := rc.Cause() == errClosed; stopped != (i%3 == 0) {
			t.Errorf("run %d: stopped %v, removed %v", i, stopped, i%3 != 0)
		}
	}
}

// A reactor instance blocked in a host function that ignores its context
// is abandoned like a command's: Run returns, the instance is never
// pooled, and it is closed once the host function returns; the next task
// gets a fresh instance.
func TestReactorAbandonedInstanceIsClosed(t *testing.T) {
	wasm := watText(t, `(module
  (import "atf_v1" "block" (func $block))
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "atf_handle") (param i32) (result i32)
    (if (local.get 0) (then (call $block)))
    (i32.const 0)))`)
	release := make(chan struct{})
	var blocked atomic.Value // api.Module
	register := func(ctx context.Context, r wazero.Runtime) error {
		_, err := r.NewHostModuleBuilder("atf_v1").NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, _ []uint64) {
				blocked.Store(m)
				<-release
			}), nil, nil).Export("block").Instantiate(ctx)
		return err
	}
	e, err := New(context.Background(), Config{HostModules: []HostModule{register}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	job := wasmJob(wasm, 200*time.Millisecond)
	if res := e.Run(context.Background(), job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
		t.Fatalf("empty payload: %s %v", res.Outcome, res.Error)
	}
	job.Payload = []byte("b")
	start := time.Now()
	res := e.Run(context.Background(), job)
	if elapsed := time.Since(start); elapsed > time.Second+abandonAfter {
		t.Errorf("Run took %s", elapsed)
	}
	if res.Outcome != atfv1.Outcome_OUTCOME_RETRY || !strings.Contains(res.Error.GetMessage(), "abandoned") {
		t.Fatalf("blocked: %s %v, want an abandoned timeout", res.Outcome, res.Error)
	}
	mod := blocked.Load().(api.Module)
	if mod.IsClosed() || e.pool.idleCount() != 0 {
		t.Fatalf("while blocked: closed %v, %d idle instances", mod.IsClosed(), e.pool.idleCount())
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); !mod.IsClosed() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !mod.IsClosed() {
		t.Fatal("the abandoned instance was not closed after its host function returned")
	}
	job.Payload = nil
	for range 3 {
		if res := e.Run(context.Background(), job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("after: %s %v", res.Outcome, res.Error)
		}
	}
	if inst := e.pool.get(poolKey{sha: job.SHA256, memoryMB: job.MemoryMB}); inst == nil || inst.mod == mod || inst.mod.IsClosed() {
		t.Errorf("pooled instance %v, want a fresh, open one", inst)
	} else {
		e.closeInstance(inst)
	}
}

// wasmJob is a job running wasm (16 MB of memory) within timeout.
func wasmJob(wasm []byte, timeout time.Duration) Job {
	sum := sha256.Sum256(wasm)
	return Job{
		SHA256:   hex.EncodeToString(sum[:]),
		Load:     func(context.Context) ([]byte, error) { return wasm, nil },
		Timeout:  timeout,
		MemoryMB: 16,
	}
}
