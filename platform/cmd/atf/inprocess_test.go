package main

// An in-process platform for benchmarks and for tests of scheduling
// behaviour (priority, caps): every role and one executor in one process,
// a real redis-server, and the executor's execution log read as it is
// written.

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/executor"
	"github.com/atfhq/atf/platform/gctune"
	"github.com/atfhq/atf/platform/hsc"
	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/runtime/sandbox"
)

// starts records, from the executor's execution log, when each task's
// first execution started, and the executions running at each moment.
type starts struct {
	mu      sync.Mutex
	at      map[string]int64
	running map[string]int // lambda-independent: task id -> running now
	peak    int            // most executions running at once
	order   []string       // task ids in the order their first execution started
}

func (s *starts) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 5 {
			continue
		}
		ns, _ := strconv.ParseInt(f[4], 10, 64)
		s.mu.Lock()
		switch f[0] {
		case "start":
			if _, ok := s.at[f[1]]; !ok {
				s.at[f[1]] = ns
				s.order = append(s.order, f[1])
			}
			s.running[f[1]]++
			s.peak = max(s.peak, len(s.running))
		case "end":
			if s.running[f[1]]--; s.running[f[1]] <= 0 {
				delete(s.running, f[1])
			}
		}
		s.mu.Unlock()
	}
	return len(p), nil
}

// resetPeak starts counting the peak of concurrent executions anew.
func (s *starts) resetPeak() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak = len(s.running)
}

// counting is the HSC as the executor sees it, counting accepted results.
// It takes SetResults too, as the HSC does: the executor of `atf dev`
// reports results that finish together in one call, and so does this one.
type counting struct {
	*hsc.HSC
	done atomic.Int64
}

func (c *counting) SetResult(ctx context.Context, req *atfv1.SetResultRequest) (*atfv1.SetResultResponse, error) {
	res, err := c.HSC.SetResult(ctx, req)
	if err == nil && res.GetState() == atfv1.TaskState_TASK_STATE_SUCCESS {
		c.done.Add(1)
	}
	return res, err
}

func (c *counting) SetResults(ctx context.Context, req *atfv1.SetResultsRequest) (*atfv1.SetResultsResponse, error) {
	res, err := c.HSC.SetResults(ctx, req)
	for _, a := range res.GetAnswers() {
		if a.GetState() == atfv1.TaskState_TASK_STATE_SUCCESS {
			c.done.Add(1)
		}
	}
	return res, err
}

type benchPlatform struct {
	p      *platform
	rdb    *redis.Client
	starts *starts
	status *counting
	sent   *commandCounter
}

// commandCounter counts the commands the platform sends to Redis (a
// script is one EVALSHA, however many calls it makes inside) and the
// round trips they take (a pipeline is one).
type commandCounter struct {
	commands, roundTrips atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.commands.Add(1)
		c.roundTrips.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.commands.Add(int64(len(cmds)))
		c.roundTrips.Add(1)
		return next(ctx, cmds)
	}
}

// startPlatform runs every role and one executor with slots slots in
// process, against a real redis-server, with the trivial lambda "noop"
// deployed and warmed up.
func startPlatform(b testing.TB, slots int) *benchPlatform {
	b.Helper()
	return startPlatformWith(b, slots, true)
}

// startPlatformWith is startPlatform, with the executor's execution log
// (which bp.starts reads) only when executionLog is set: atf runs without
// one unless --execution-log is given, and writing it costs ~5% of the
// platform's CPU per task.
func startPlatformWith(b testing.TB, slots int, executionLog bool) *benchPlatform {
	b.Helper()
	if os.Getenv("GOGC") == "" { // as the atf binary does by default
		b.Cleanup(gctune.Start(b.Context(), 100, gctune.DefaultHeadroom, gctune.DefaultEvery))
	}
	rdb := redistest.Start(b)
	sent := &commandCounter{}
	rdb.AddHook(sent)
	ctx := b.Context()
	engine, err := sandbox.New(ctx, sandbox.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { engine.Close(context.Background()) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tf := timeoutFlags{heartbeatInterval: 3 * time.Second, heartbeatTimeout: 10 * time.Second, enqueueTimeout: 30 * time.Second, claimTimeout: 30 * time.Second,
		dispatchLead: store.DefaultDispatchLead}
	if v := os.Getenv("ATF_DISPATCH_LEAD"); v != "" { // as the binary reads it
		if tf.dispatchLead, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
	}
	var tel *telemetry.Telemetry
	if _, bench := b.(*testing.B); bench {
		// Telemetry as atf runs by default: metrics on (Prometheus, Redis
		// pool metrics), traces only when OTEL_* asks for them — here
		// whatever tracer provider the benchmark installed.
		tp := otel.GetTracerProvider()
		var stop func()
		if tel, stop, err = startTelemetry(ctx, func(string) string { return "" }, logger); err != nil {
			b.Fatal(err)
		}
		otel.SetTracerProvider(tp)
		b.Cleanup(stop)
	}
	roles := map[string]bool{roleFrontend: true, roleConsumer: true, roleController: true, roleHSC: true}
	p := newPlatform(platformConfig{rdb: rdb, roles: roles, timeouts: tf, engine: engine, logger: logger, tel: tel})
	bp := &benchPlatform{p: p, rdb: rdb, starts: &starts{at: map[string]int64{}, running: map[string]int{}}, status: &counting{HSC: p.hsc}, sent: sent}
	exCfg := executor.Config{
		Controller: p.controller, Status: bp.status, Runner: engine, Logger: logger,
		Slots: slots, HeartbeatInterval: tf.heartbeatInterval,
	}
	if executionLog {
		exCfg.ExecutionLog = bp.starts
	}
	ex := executor.New(exCfg)
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{p.consumer.Run, p.controller.Run, ex.Run} {
		wg.Go(func() { _ = run(runCtx) })
	}
	b.Cleanup(func() { cancel(); wg.Wait() })
	// "noop" is a command (instantiated per task), "noop-reactor" a
	// reactor (pooled instances; an empty payload writes nothing).
	for name, wat := range map[string]string{"noop": "hello", "noop-reactor": "reactor"} {
		if _, err := p.frontend.DeployLambda(ctx, &atfv1.DeployLambdaRequest{Name: name, Wasm: testmodules.WAT(b, wat)}); err != nil {
			b.Fatal(err)
		}
		// Warm up: compile the module, fill connection pools.
		bp.scheduleAndWait(b, name, 200, 16)
	}
	return bp
}

func (bp *benchPlatform) schedule(b testing.TB, req *atfv1.ScheduleRequest) string {
	res, err := bp.p.frontend.Schedule(b.Context(), req)
	if err != nil {
		b.Fatal(err)
	}
	return res.GetTask().GetId()
}

// scheduleAndWait schedules n tasks of lambda from workers goroutines,
// each Schedule call one task, and waits for all to succeed.
func (bp *benchPlatform) scheduleAndWait(b testing.TB, lambda string, n, workers int) time.Duration {
	b.Helper()
	return bp.scheduleInBatchesAndWait(b, lambda, n, workers, 0)
}

// scheduleInBatchesAndWait is scheduleAndWait with ScheduleBatch calls of
// batch tasks each (n a multiple of it); batch 0 calls Schedule.
func (bp *benchPlatform) scheduleInBatchesAndWait(b testing.TB, lambda string, n, workers, batch int) time.Duration {
	b.Helper()
	target := bp.status.done.Load() + int64(n)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(int64(max(batch, 1))) <= int64(n) {
				if batch == 0 {
					bp.schedule(b, &atfv1.ScheduleRequest{Lambda: lambda})
					continue
				}
				req := &atfv1.ScheduleBatchRequest{Tasks: make([]*atfv1.ScheduleRequest, batch)}
				for i := range req.Tasks {
					req.Tasks[i] = &atfv1.ScheduleRequest{Lambda: lambda}
				}
				if _, err := bp.p.frontend.ScheduleBatch(b.Context(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	scheduled := time.Since(start)
	bp.waitDone(b, target, time.Minute)
	if n >= 1000 {
		b.Logf("%d tasks scheduled in %s (%.0f/s), all done in %s", n, scheduled, float64(n)/scheduled.Seconds(), time.Since(start))
	}
	return time.Since(start)
}

func (bp *benchPlatform) waitDone(b testing.TB, target int64, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for bp.status.done.Load() < target {
		if time.Now().After(deadline) {
			b.Fatalf("%d of the tasks done after %s", bp.status.done.Load(), within)
		}
		time.Sleep(time.Millisecond)
	}
}

// cpu is the CPU time used so far by this process and by redis-server:
// unlike wall-clock rates, CPU per task is meaningful on a shared machine.
func (bp *benchPlatform) cpu(b testing.TB) (self, redis time.Duration) {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return self, redistest.CPU(b, bp.rdb)
}

func (bp *benchPlatform) commands(b testing.TB) int64 {
	b.Helper()
	info, err := bp.rdb.Info(b.Context(), "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no total_commands_processed in INFO stats")
	return 0
}
