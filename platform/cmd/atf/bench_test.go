package main

// Benchmarks of the whole platform in one process against a real
// redis-server and a trivial hand-written WAT lambda: throughput, pickup
// latency, scheduled lateness, Redis commands per task, and the cost of an
// idle platform. Each prints its figures beside issue 3's targets;
// BENCHMARKS.md records them. Run with `make bench`.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/executor"
	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/runtime/sandbox"
)

// starts records when each execution started, from the executor's
// execution log.
type starts struct {
	mu sync.Mutex
	at map[string]int64
}

func (s *starts) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) >= 5 && f[0] == "start" {
			ns, _ := strconv.ParseInt(f[4], 10, 64)
			s.mu.Lock()
			if _, ok := s.at[f[1]]; !ok {
				s.at[f[1]] = ns
			}
			s.mu.Unlock()
		}
	}
	return len(p), nil
}

// counting is the HSC as the executor sees it, counting accepted results.
type counting struct {
	executor.Status
	done atomic.Int64
}

func (c *counting) SetResult(ctx context.Context, req *atfv1.SetResultRequest) (*atfv1.SetResultResponse, error) {
	res, err := c.Status.SetResult(ctx, req)
	if err == nil && res.GetState() == atfv1.TaskState_TASK_STATE_SUCCESS {
		c.done.Add(1)
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

// startPlatform runs every role and one executor in process, with the
// trivial lambda "noop" deployed.
func startPlatform(b *testing.B, slots int) *benchPlatform {
	b.Helper()
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
	tf := timeoutFlags{heartbeatInterval: 3 * time.Second, heartbeatTimeout: 10 * time.Second, enqueueTimeout: 30 * time.Second, claimTimeout: 30 * time.Second}
	roles := map[string]bool{roleFrontend: true, roleConsumer: true, roleController: true, roleHSC: true}
	p := newPlatform(platformConfig{rdb: rdb, roles: roles, timeouts: tf, engine: engine, logger: logger})
	bp := &benchPlatform{p: p, rdb: rdb, starts: &starts{at: map[string]int64{}}, status: &counting{Status: p.hsc}, sent: sent}
	ex := executor.New(executor.Config{
		Controller: p.controller, Status: bp.status, Runner: engine, Logger: logger,
		Slots: slots, HeartbeatInterval: tf.heartbeatInterval, ExecutionLog: bp.starts,
	})
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{p.consumer.Run, p.controller.Run, ex.Run} {
		wg.Go(func() { _ = run(runCtx) })
	}
	b.Cleanup(func() { cancel(); wg.Wait() })
	if _, err := p.frontend.DeployLambda(ctx, &atfv1.DeployLambdaRequest{Name: "noop", Wasm: testmodules.WAT(b, "hello")}); err != nil {
		b.Fatal(err)
	}
	// Warm up: compile the module, fill connection pools.
	bp.scheduleAndWait(b, 200, 16)
	return bp
}

func (bp *benchPlatform) schedule(b *testing.B, req *atfv1.ScheduleRequest) string {
	res, err := bp.p.frontend.Schedule(b.Context(), req)
	if err != nil {
		b.Fatal(err)
	}
	return res.GetTask().GetId()
}

// scheduleAndWait schedules n tasks from workers goroutines and waits for
// all to succeed.
func (bp *benchPlatform) scheduleAndWait(b *testing.B, n, workers int) time.Duration {
	b.Helper()
	target := bp.status.done.Load() + int64(n)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				bp.schedule(b, &atfv1.ScheduleRequest{Lambda: "noop"})
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

func (bp *benchPlatform) waitDone(b *testing.B, target int64, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for bp.status.done.Load() < target {
		if time.Now().After(deadline) {
			b.Fatalf("%d of the tasks done after %s", bp.status.done.Load(), within)
		}
		time.Sleep(time.Millisecond)
	}
}

func (bp *benchPlatform) commands(b *testing.B) int64 {
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

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

func report(b *testing.B, name string, value float64, unit, target string) {
	b.ReportMetric(value, unit)
	fmt.Printf("  %-36s %12.2f %-10s target %s\n", name, value, unit, target)
}

// BenchmarkThroughput: schedule → SUCCESS for 20,000 tasks, scheduled in
// process by 32 goroutines; also Redis commands per task.
func BenchmarkThroughput(b *testing.B) {
	bp := startPlatform(b, 256)
	const n = 20000
	for b.Loop() {
		cmds, trips, served := bp.sent.commands.Load(), bp.sent.roundTrips.Load(), bp.commands(b)
		took := bp.scheduleAndWait(b, n, 32)
		report(b, "throughput", float64(n)/took.Seconds(), "tasks/s", ">= 15000")
		report(b, "redis commands per task", float64(bp.sent.commands.Load()-cmds)/n, "cmds/task", "<= 6 (a script is one)")
		report(b, "redis round trips per task", float64(bp.sent.roundTrips.Load()-trips)/n, "trips/task", "")
		report(b, "redis-server calls per task", float64(bp.commands(b)-served)/n, "calls/task", "(counts calls inside scripts)")
		if testing.Verbose() {
			stats, _ := bp.rdb.Info(b.Context(), "commandstats", "cpu").Result()
			b.Log(stats)
		}
	}
}

// BenchmarkPickupLatency: 2,000 tasks/s offered for 3s, each due now;
// pickup is the time from the Schedule call to the sandbox starting.
func BenchmarkPickupLatency(b *testing.B) {
	bp := startPlatform(b, 64)
	const rate, seconds = 2000, 3
	for b.Loop() {
		scheduled := map[string]int64{}
		target := bp.status.done.Load() + rate*seconds
		tick := time.NewTicker(time.Second / 100)
		for range 100 * seconds {
			<-tick.C
			for range rate / 100 {
				at := time.Now().UnixNano()
				scheduled[bp.schedule(b, &atfv1.ScheduleRequest{Lambda: "noop"})] = at
			}
		}
		tick.Stop()
		bp.waitDone(b, target, time.Minute)
		var lat []time.Duration
		bp.starts.mu.Lock()
		for id, at := range scheduled {
			lat = append(lat, time.Duration(bp.starts.at[id]-at))
		}
		bp.starts.mu.Unlock()
		report(b, "pickup p50", float64(percentile(lat, 0.50))/1e6, "ms", "")
		report(b, "pickup p99", float64(percentile(lat, 0.99))/1e6, "ms", "<= 5 ms at 2000 tasks/s")
	}
}

// BenchmarkScheduledLateness: 4,000 tasks due over two seconds, starting a
// second from now; lateness is start - executeAt.
func BenchmarkScheduledLateness(b *testing.B) {
	bp := startPlatform(b, 64)
	const n = 4000
	for b.Loop() {
		due := map[string]int64{}
		target := bp.status.done.Load() + n
		base := time.Now().Add(time.Second).Truncate(time.Millisecond)
		for i := range n {
			at := base.Add(time.Duration(i) * time.Millisecond / 2).Truncate(time.Millisecond)
			due[bp.schedule(b, &atfv1.ScheduleRequest{Lambda: "noop", ExecuteAt: timestamppb.New(at)})] = at.UnixNano()
		}
		bp.waitDone(b, target, time.Minute)
		var late []time.Duration
		early := 0
		bp.starts.mu.Lock()
		for id, at := range due {
			d := time.Duration(bp.starts.at[id] - at)
			if d < 0 {
				early++
			}
			late = append(late, d)
		}
		bp.starts.mu.Unlock()
		report(b, "lateness p50", float64(percentile(late, 0.50))/1e6, "ms", "")
		report(b, "lateness p99", float64(percentile(late, 0.99))/1e6, "ms", "<= 10 ms")
		report(b, "tasks started early", float64(early), "tasks", "0")
	}
}

// BenchmarkIdle: Redis commands per second of an idle platform (every role
// and one executor).
func BenchmarkIdle(b *testing.B) {
	bp := startPlatform(b, 8)
	for b.Loop() {
		time.Sleep(2 * time.Second)
		before, served := bp.sent.commands.Load(), bp.commands(b)
		const window = 10 * time.Second
		time.Sleep(window)
		report(b, "idle redis commands", float64(bp.sent.commands.Load()-before)/window.Seconds(), "cmds/s", "<= 5")
		// INFO itself is one call.
		report(b, "idle redis-server calls", float64(bp.commands(b)-served-1)/window.Seconds(), "calls/s", "(counts calls inside scripts)")
	}
}
