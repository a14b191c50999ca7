package sandbox

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// Job is one execution of a module.
type Job struct {
	// SHA256 is the module's identity (lowercase hex of its bytes). The
	// module is compiled once per SHA256 and kept; the bytes Load returns
	// must hash to it.
	SHA256 string
	// Load fetches the module bytes when the module is not compiled yet.
	Load func(ctx context.Context) ([]byte, error)
	// Payload is the module's stdin.
	Payload []byte
	// Env is exactly the guest's environment (ATF_TASK_ID, ATF_LAMBDA,
	// ATF_ATTEMPT, TRACEPARENT); nothing of the host's is added. When it
	// is nil, Vars gives it.
	Env map[string]string
	// Vars, when Env is nil and Vars is not zero, is the environment: its
	// four variables, empty or not. The sandbox then builds the map only
	// when a run needs it (a command's WASI environment, TaskEnv): a
	// reactor task whose module asks for none builds none.
	Vars Vars
	// Timeout bounds the run; <= 0 sets no limit beyond ctx.
	Timeout time.Duration
	// MemoryMB caps the module's linear memory; it must be > 0.
	MemoryMB int
	// MaxOutputBytes and MaxLogBytes cap stdout and stderr (the lambda's
	// max_output_bytes and max_log_bytes); <= 0 takes the Engine's
	// Config.MaxOutputBytes / Config.MaxLogBytes.
	MaxOutputBytes int
	MaxLogBytes    int
	// Host is this task's value for host functions (atf_v1): they get it
	// back with HostFrom(ctx). The sandbox never looks inside. nil: none.
	Host any
}

// Vars are the standard variables of a task's environment (Job.Vars).
type Vars struct {
	TaskID, Lambda, Attempt, TraceParent string // ATF_TASK_ID, ATF_LAMBDA, ATF_ATTEMPT, TRACEPARENT
}

// env is v as an environment.
func (v *Vars) env() map[string]string {
	return map[string]string{"ATF_TASK_ID": v.TaskID, "ATF_LAMBDA": v.Lambda, "ATF_ATTEMPT": v.Attempt, "TRACEPARENT": v.TraceParent}
}

// lambda is the job's ATF_LAMBDA, without building its environment.
func (j *Job) lambda() string {
	if j.Env != nil {
		return j.Env["ATF_LAMBDA"]
	}
	return j.Vars.Lambda
}

// Result is how a run ended.
type Result struct {
	// Outcome is SUCCESS, RETRY, FATAL or CANCELLED.
	Outcome atfv1.Outcome
	// Output is what the module wrote to stdout, at most MaxOutputBytes.
	Output []byte
	// OutputTruncated is true when the module wrote more than MaxOutputBytes.
	OutputTruncated bool
	// Error is nil on success.
	Error *atfv1.TaskError
	// Duration is the time spent instantiating and running the module
	// (compilation and loading excluded).
	Duration time.Duration
	// Stderr is the kept end of the module's stderr (StderrTailBytes),
	// whatever the outcome: the executor stores it as the task's logs.
	Stderr string
	// MemoryPeakBytes is the largest linear memory the instance reached
	// (0 when it never started); for a reactor, over the instance's life
	// so far, not only this task.
	MemoryPeakBytes uint64
	// CPUTime is the CPU time the module's own calls used (its start
	// function and _start, or atf_handle), measured on the thread that ran
	// them; instantiation and compilation are not in it. 0 where the
	// thread CPU clock is not available (outside Linux).
	CPUTime time.Duration
}

// Run runs job's module: a WASI command in a fresh instance, a reactor in
// a pooled one (reactor.go). It never panics and never returns a Go error:
// every failure is a Result. When ctx is cancelled the module is stopped at
// once and the Result is OUTCOME_CANCELLED.
func (e *Engine) Run(ctx context.Context, job Job) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL,
				fmt.Sprintf("sandbox panic: %v", p))
		}
	}()
	if err := validateJob(job); err != nil {
		return failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL, err.Error())
	}
	if ctx.Err() != nil {
		return cancelled(ctx)
	}
	if !e.enter() {
		return failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL, errClosed.Error())
	}
	defer e.inflight.Done()

	c, err := e.acquire(ctx, job)
	if err != nil {
		var modErr *moduleError
		switch {
		case ctx.Err() != nil:
			return cancelled(ctx)
		case errors.As(err, &modErr):
			return failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MODULE, err.Error())
		default:
			return failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL, err.Error())
		}
	}
	defer e.release(c, true)

	start := time.Now()
	switch c.abi {
	case atfv1.Abi_ABI_COMMAND:
		res = e.runCommand(ctx, c.mod, job)
	case atfv1.Abi_ABI_REACTOR:
		res = e.runReactor(ctx, c, job)
	default:
		return failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MODULE, c.abiErr.Error())
	}
	res.Duration = time.Since(start)
	return res
}

// newRunState is the per-task part of a run: limits, stdout and stderr
// (whose limits stop rc; they live in rc, one allocation less each).
func (e *Engine) newRunState(job Job, rc *runContext) runState {
	st := runState{
		timeout:  job.Timeout,
		memoryMB: job.MemoryMB,
		maxOut:   cmp.Or(max(job.MaxOutputBytes, 0), e.cfg.MaxOutputBytes),
		maxLog:   cmp.Or(max(job.MaxLogBytes, 0), e.cfg.MaxLogBytes),
		maxStack: e.cfg.MaxStackBytes,
		stdout:   &rc.stdout,
		stderr:   &rc.stderr,
	}
	rc.stdout = outputWriter{limit: st.maxOut, stop: rc}
	rc.stderr = tailWriter{size: e.cfg.StderrTailBytes, limit: int64(st.maxLog), stop: rc}
	return st
}

// runCommand instantiates compiled for one task and calls _start.
func (e *Engine) runCommand(ctx context.Context, compiled wazero.CompiledModule, job Job) Result {
	rc := newRunContext(ctx, job)
	defer rc.release()

	st := e.newRunState(job, rc)
	st.mem = newMemoryLimit(job.MemoryMB)
	e.track(rc)
	defer e.runs.remove(rc)

	mod, err := e.instantiate(experimental.WithMemoryAllocator(rc, st.mem), compiled, moduleConfig(job, st, rc))
	if err != nil {
		return instantiateFailure(err, job, st, rc)
	}
	closeMod := func() { mod.Close(context.WithoutCancel(ctx)) }
	owned := true // false once an abandoned call owns the instance
	defer func() {
		if owned {
			closeMod()
		}
	}()
	g, err := newGuard(mod)
	if err != nil {
		return failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_INTERNAL, err.Error())
	}

	var abandoned bool
	st.err, st.cpu, abandoned = callGuest(rc, newGuestCall(func() error {
		if start := mod.ExportedFunction(startExport); start != nil {
			if _, err := start.Call(rc); err != nil {
				return err
			}
		}
		_, err := mod.ExportedFunction("_start").Call(rc)
		return err
	}, closeMod), g)
	if abandoned {
		owned = false
		return abandonedResult(st, rc.Cause())
	}
	st.cause = rc.Cause()
	st.stackHit = g.stackExhausted()
	return classify(st)
}

// instantiateFailure classifies an error of instantiate.
func instantiateFailure(err error, job Job, st runState, rc *runContext) Result {
	var initMem *initialMemoryError
	switch {
	case errors.As(err, &initMem):
		r := failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MEMORY_LIMIT,
			fmt.Sprintf("memory limit hit: memory_mb=%d (%s)", job.MemoryMB, initMem.Error()))
		r.Error.Limit = fmt.Sprintf("memory_mb=%d", job.MemoryMB)
		return r
	case rc.Err() != nil:
		st.err, st.cause = err, rc.Cause()
		return classify(st)
	default:
		return failure(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MODULE,
			"instantiate module: "+err.Error())
	}
}

// instantiate instantiates compiled without running any start function,
// turning the allocator's initialMemoryError panic back into an error.
func (e *Engine) instantiate(ctx context.Context, compiled wazero.CompiledModule, cfg wazero.ModuleConfig) (mod api.Module, err error) {
	defer func() {
		if p := recover(); p != nil {
			if ime, ok := p.(*initialMemoryError); ok {
				mod, err = nil, ime
				return
			}
			panic(p)
		}
	}()
	return e.runtime.InstantiateModule(ctx, compiled, cfg)
}

// baseModuleConfig is what every instance's config shares (each With…
// copies the config, so it is built once).
var baseModuleConfig = wazero.NewModuleConfig().
	WithName("").         // anonymous: concurrent instances of one module
	WithStartFunctions(). // _start is called by runCommand
	WithSysWalltime().
	WithSysNanotime().
	WithRandSource(rand.Reader)

// moduleConfig is the guest's whole world: stdin, stdout, stderr, the
// job's environment (Job.Env or Job.Vars), real clocks and randomness. No
// filesystem is mounted and no host environment variable is passed.
func moduleConfig(job Job, st runState, rc *runContext) wazero.ModuleConfig {
	argv0 := job.lambda()
	if argv0 == "" {
		argv0 = "lambda"
	}
	cfg := baseModuleConfig.
		WithArgs(argv0).
		WithStdin(bytes.NewReader(job.Payload)).
		WithStdout(st.stdout).
		WithStderr(st.stderr).
		WithNanosleep(rc.sleep)
	env := rc.taskEnv()
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cfg = cfg.WithEnv(k, env[k])
	}
	return cfg
}

func validateJob(job Job) error {
	if job.SHA256 == "" {
		return errors.New("job has no module SHA256")
	}
	if job.MemoryMB <= 0 {
		return fmt.Errorf("job has memory_mb=%d; it must be positive", job.MemoryMB)
	}
	for k, v := range job.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return fmt.Errorf("job has an invalid environment variable %q", k)
		}
	}
	if job.Env == nil {
		v := &job.Vars
		for _, kv := range [...][2]string{{"ATF_TASK_ID", v.TaskID}, {"ATF_LAMBDA", v.Lambda}, {"ATF_ATTEMPT", v.Attempt}, {"TRACEPARENT", v.TraceParent}} {
			if strings.IndexByte(kv[1], 0) >= 0 {
				return fmt.Errorf("job has an invalid environment variable %q", kv[0])
			}
		}
	}
	return nil
}

func cancelled(ctx context.Context) Result {
	return failure(atfv1.Outcome_OUTCOME_CANCELLED, atfv1.ErrorKind_ERROR_KIND_UNSPECIFIED,
		"cancelled: "+context.Cause(ctx).Error())
}
