package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// The reactor model (doc.go, "Reactor ABI (v1)"): one instance serves many
// tasks, one at a time.
//
//	Run ─► pool.get(sha256, memory_mb) ──idle──────────────────────┐
//	         │ none                                                 ▼
//	         ▼                                      stdio → this task, $stop = 0,
//	      instantiate (allocator = memory limit)    $budget = full, hit = false
//	      __atf_start, _initialize ─fail─► Result        ▼
//	         └──────────────────────────────────► atf_handle(len) under the run context
//	                                                     ▼
//	                                   classify ─► SUCCESS, uses < ReactorMaxUses ─► pool.put
//	                                            └► anything else ─► close
//
// What makes reuse possible without wazero's help:
//
//   - stdio: wazero wraps a WithStdin reader and WithStdout/WithStderr
//     writers that are not *os.File as they are and calls their Read and
//     Write on every fd_read / fd_write (wazero v1.12.0
//     internal/sys/stdio.go, StdinFile and writerFile), so an instance gets
//     swapReader and swapWriter, whose target is the current task's payload
//     and writers;
//   - host functions get the context passed to Function.Call, so
//     HostFrom/TaskEnv see the current task's Job (host.go);
//   - the instrumentation globals are per instance: $stop is cleared and
//     $budget refilled before each call (a stop that fired just after a
//     successful return must not stop the next task);
//   - the memory limit is the instance's allocator; its "hit" flag is
//     cleared per call, its peak is the instance's;
//   - WASI sleeps end with the current task's run context (instance.sleep).

const (
	initializeExport = "_initialize"
	handleExport     = "atf_handle"
)

// instance is one reactor instance. Between pool.get and pool.put (or
// close) it belongs to one Run; the pool's mutex orders the hand-offs.
type instance struct {
	key    poolKey
	c      *compiled // holds a reference (refs) until closeInstance
	mod    api.Module
	handle api.Function
	guard  guard
	mem    *memoryLimit
	stdin  swapReader
	stdout swapWriter
	stderr swapWriter
	rc     atomic.Pointer[runContext] // the current task's, for sleep
	// gc calls handle for one task (callGuest); stack holds its argument,
	// then its result.
	gc    *guestCall
	stack [1]uint64
	uses  int
	// lruPrev and lruNext link it in pool.lru while idle.
	lruPrev, lruNext *instance
	// idleSince is when it went idle (pool.put).
	idleSince time.Time
}

// swapReader is an instance's stdin: the current task's payload, then EOF.
type swapReader struct{ r bytes.Reader }

func (s *swapReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// swapWriter is an instance's stdout or stderr: the current task's writer.
type swapWriter struct{ w io.Writer }

func (s *swapWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

// sleep is the instance's nanosleep: it ends with the current task's run
// context.
func (inst *instance) sleep(ns int64) {
	if rc := inst.rc.Load(); rc != nil {
		rc.sleep(ns)
	}
}

// attach points the instance's stdio and sleep at the current task.
func (inst *instance) attach(payload []byte, st *runState, rc *runContext) {
	inst.stdin.r.Reset(payload)
	inst.stdout.w, inst.stderr.w = st.stdout, st.stderr
	inst.rc.Store(rc)
}

// detach lets go of the task's buffers, so an idle instance keeps none.
func (inst *instance) detach() {
	inst.stdin.r.Reset(nil)
	inst.stdout.w, inst.stderr.w = io.Discard, io.Discard
	inst.rc.Store(nil)
}

// runReactor runs one task on a pooled instance of c, instantiating one
// when none is idle.
func (e *Engine) runReactor(ctx context.Context, c *compiled, job Job) Result {
	rc := newRunContext(ctx, job)
	defer rc.release()
	st := e.newRunState(job, rc)
	e.track(rc)
	defer e.runs.remove(rc)

	inst := e.pool.get(poolKey{sha: c.sha, memoryMB: job.MemoryMB})
	if inst == nil {
		var res Result
		if inst, res = e.newInstance(rc, c, job, &st); inst == nil {
			return res
		}
	}
	ok, abandoned := inst.call(rc, job.Payload, &st, e.stackBudget())
	if abandoned { // the instance is closed when the host call returns
		return abandonedResult(st, rc.Cause())
	}
	inst.uses++
	res := classify(st)
	if ok && res.Outcome == atfv1.Outcome_OUTCOME_SUCCESS && inst.uses < e.cfg.ReactorMaxUses && !e.evicted(inst.c) {
		for _, old := range e.pool.put(inst) {
			e.closeInstance(old)
		}
	} else {
		e.closeInstance(inst)
	}
	return res
}

// newInstance instantiates c and runs its start function and _initialize
// under the first task's run context, whose stdout and stderr get what
// they write. On failure it returns nil and the task's Result.
func (e *Engine) newInstance(rc *runContext, c *compiled, job Job, st *runState) (*instance, Result) {
	inst := &instance{key: poolKey{sha: c.sha, memoryMB: job.MemoryMB}, c: c, mem: newMemoryLimit(job.MemoryMB)}
	st.mem = inst.mem
	inst.attach(nil, st, rc)
	e.mu.Lock()
	c.refs++
	e.mu.Unlock()

	mod, err := e.instantiate(experimental.WithMemoryAllocator(rc, inst.mem), c.mod, reactorConfig(job, inst))
	if err != nil {
		e.closeInstance(inst)
		return nil, instantiateFailure(err, job, *st, rc)
	}
	inst.mod = mod
	g, err := newGuard(mod)
	if err != nil {
		e.closeInstance(inst)
		return nil, failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL, err.Error())
	}
	inst.guard = g
	inst.handle = mod.ExportedFunction(handleExport)
	inst.gc = newGuestCall(inst.callHandle, func() { inst.detach(); e.closeInstance(inst) })

	disarm := g.arm(rc)
	if start := mod.ExportedFunction(startExport); start != nil {
		_, st.err = start.Call(rc)
	}
	if st.err == nil {
		_, st.err = mod.ExportedFunction(initializeExport).Call(rc)
	}
	disarm()
	if st.err == nil && rc.Err() == nil {
		return inst, Result{}
	}
	e.closeInstance(inst)
	var exit *sys.ExitError
	if errors.As(st.err, &exit) && exit.ExitCode() == 0 {
		return nil, failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MODULE,
			"_initialize called proc_exit(0): a reactor's _initialize must return")
	}
	if st.err == nil { // stopped just as it returned
		st.err = errors.New("stopped")
	}
	st.cause = rc.Cause()
	st.stackHit = g.stackExhausted()
	res := classify(*st)
	if res.Error != nil {
		res.Error.Message = "_initialize: " + res.Error.Message
	}
	return nil, res
}

// call runs atf_handle for one task and fills st with how it ended. It
// reports whether the instance can serve another task as far as the call
// is concerned: it returned (no trap, stop or proc_exit). When the module
// is blocked in a host function past its deadline (callGuest), call
// returns abandoned at once and the instance is closed when the host call
// returns; it must not be touched meanwhile.
func (inst *instance) call(rc *runContext, payload []byte, st *runState, budget int32) (ok, abandoned bool) {
	st.mem = inst.mem
	inst.mem.resetCall()
	inst.guard.reset(budget)
	inst.attach(payload, st, rc)
	inst.stack[0] = uint64(uint32(len(payload)))

	err, cpu, abandoned := callGuest(rc, inst.gc, inst.guard)
	if abandoned {
		return false, true
	}
	st.cpu = cpu
	inst.detach()
	st.cause = rc.Cause()
	st.stackHit = inst.guard.stackExhausted()
	if err != nil {
		st.err = err
		return false, false
	}
	if status := int32(uint32(inst.stack[0])); status != 0 {
		st.err = sys.NewExitError(uint32(status))
		st.status = true
	}
	return true, false
}

// callHandle is inst.gc's call: atf_handle(inst.stack[0]) under the
// current task's run context, its status left in inst.stack[0].
func (inst *instance) callHandle() error {
	return inst.handle.CallWithStack(inst.rc.Load(), inst.stack[:])
}

// evicted reports whether c left the compiled-module cache: its instances
// are not pooled any more, so that its code can be freed.
func (e *Engine) evicted(c *compiled) bool {
	// No e.mu: taking it would not order this read before an eviction that
	// races it either (drop and the idle expiry close what that lets in).
	return c.evicted.Load()
}

// closeInstance closes inst and gives back its reference to the module.
func (e *Engine) closeInstance(inst *instance) {
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
	e.release(inst.c, false)
}

// reactorConfig is moduleConfig for an instance that outlives a task: its
// stdio is switched per task and its environment holds only ATF_LAMBDA
// (per-task values reach host functions through TaskEnv, and the guest
// through atf_v1.task_env).
func reactorConfig(job Job, inst *instance) wazero.ModuleConfig {
	lambda := job.lambda()
	argv0 := lambda
	if argv0 == "" {
		argv0 = "lambda"
	}
	cfg := baseModuleConfig.
		WithArgs(argv0).
		WithStdin(&inst.stdin).
		WithStdout(&inst.stdout).
		WithStderr(&inst.stderr).
		WithNanosleep(inst.sleep)
	if lambda != "" {
		cfg = cfg.WithEnv("ATF_LAMBDA", lambda)
	}
	return cfg
}

// statusMessage is the start of a FATAL status's error message.
func statusMessage(code uint32) string { return fmt.Sprintf("status %d", int32(code)) }
