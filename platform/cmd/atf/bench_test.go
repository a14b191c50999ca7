package main

// Benchmarks of the whole platform in one process against a real
// redis-server and a trivial hand-written WAT lambda: throughput, pickup
// latency, scheduled lateness, Redis commands per task, and the cost of an
// idle platform. Each prints its figures beside issue 3's targets;
// BENCHMARKS.md records them. Run with `make bench`.

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
)

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
// process by 32 goroutines; also Redis commands per task. Command: the
// trivial lambda is a command module (instantiated for each task);
// Reactor: a reactor module (instances pooled), which leaves the
// platform's own cost.
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name, lambda string
		batch        int // tasks per ScheduleBatch; 0: one Schedule each
	}{{"Command", "noop", 0}, {"Reactor", "noop-reactor", 0}, {"ReactorBatch100", "noop-reactor", 100}} {
		b.Run(tc.name, func(b *testing.B) {
			bp := startPlatformWith(b, 256, false) // as atf runs by default
			const n = 20000
			for b.Loop() {
				cmds, trips, served := bp.sent.commands.Load(), bp.sent.roundTrips.Load(), bp.commands(b)
				selfCPU, redisCPU := bp.cpu(b)
				producers := benchProducers()
				if tc.batch > 0 {
					producers = 8
				}
				took := bp.scheduleInBatchesAndWait(b, tc.lambda, n, producers, tc.batch)
				selfCPU2, redisCPU2 := bp.cpu(b)
				report(b, "throughput", float64(n)/took.Seconds(), "tasks/s", ">= 15000")
				// CPU per task bounds throughput whatever the machine's load:
				// two cores give at most 2s / (platform + redis CPU per task).
				perSelf := float64((selfCPU2 - selfCPU).Microseconds()) / n
				perRedis := float64((redisCPU2 - redisCPU).Microseconds()) / n
				report(b, "platform CPU per task", perSelf, "platform-us/task", "(every role + executor, one process)")
				report(b, "redis-server CPU per task", perRedis, "redis-us/task", "")
				report(b, "2-core ceiling from CPU", 2e6/(perSelf+perRedis), "ceiling-tasks/s", "")
				// redis-server runs commands on one thread.
				report(b, "one redis-server's ceiling", 1e6/perRedis, "redis-ceiling-tasks/s", "")
				report(b, "redis commands per task", float64(bp.sent.commands.Load()-cmds)/n, "cmds/task", "<= 6 (a script is one)")
				report(b, "redis round trips per task", float64(bp.sent.roundTrips.Load()-trips)/n, "trips/task", "")
				report(b, "redis-server calls per task", float64(bp.commands(b)-served)/n, "calls/task", "(counts calls inside scripts)")
				if testing.Verbose() {
					stats, _ := bp.rdb.Info(b.Context(), "commandstats", "cpu").Result()
					b.Log(stats)
				}
			}
		})
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

// BenchmarkScheduledLateness: 4,000 tasks due over two seconds, all
// scheduled before the first is due; lateness is start - executeAt. Each
// iteration is one such window; with several (-benchtime 5x) it also
// prints the median and the range of the windows' p99, which on a shared
// machine swing more than any one change moves them.
func BenchmarkScheduledLateness(b *testing.B) {
	bp := startPlatform(b, 64)
	const n = 4000
	var p99s []float64
	defer func() {
		if len(p99s) < 2 {
			return
		}
		slices.Sort(p99s)
		report(b, "lateness p99, median of windows", p99s[len(p99s)/2], "median-p99-ms", "<= 10 ms")
		fmt.Printf("  %-36s %.1f ms\n", "lateness p99 of each window, sorted", p99s)
	}()
	for b.Loop() {
		due := map[string]int64{}
		target := bp.status.done.Load() + n
		// Far enough ahead that scheduling them all ends before the first is due.
		base := time.Now().Add(6 * time.Second).Truncate(time.Millisecond)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := w; i < n; i += 16 {
					at := base.Add(time.Duration(i) * time.Millisecond / 2).Truncate(time.Millisecond)
					id := bp.schedule(b, &atfv1.ScheduleRequest{Lambda: "noop", ExecuteAt: timestamppb.New(at)})
					mu.Lock()
					due[id] = at.UnixNano()
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if time.Now().After(base) {
			b.Fatalf("scheduling took past the first task's time; lateness would be meaningless")
		}
		time.Sleep(time.Until(base.Add(-100 * time.Millisecond)))
		selfCPU, redisCPU := bp.cpu(b)
		bp.waitDone(b, target, time.Minute)
		selfCPU2, redisCPU2 := bp.cpu(b)
		report(b, "platform CPU per task run", float64((selfCPU2-selfCPU).Microseconds())/n, "platform-us/task", "(the window's, scheduling excluded)")
		report(b, "redis-server CPU per task run", float64((redisCPU2-redisCPU).Microseconds())/n, "redis-us/task", "")
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
		p99 := float64(percentile(late, 0.99)) / 1e6
		p99s = append(p99s, p99)
		report(b, "lateness p99", p99, "ms", "<= 10 ms")
		report(b, "tasks started early", float64(early), "tasks", "0")
		// Where the lateness is: due -> enqueued by the consumer (the
		// store's millisecond timestamps; negative: the dispatch lead),
		// enqueued -> started (the executor holds a task until its time).
		var toQueue, toStart []time.Duration
		for id, at := range due {
			res, err := bp.p.frontend.GetTask(b.Context(), &atfv1.GetTaskRequest{Id: id})
			if err != nil {
				b.Fatal(err)
			}
			enq := res.GetTask().GetEnqueuedAt().AsTime().UnixNano()
			toQueue = append(toQueue, time.Duration(enq-at))
			bp.starts.mu.Lock()
			toStart = append(toStart, time.Duration(bp.starts.at[id]-enq))
			bp.starts.mu.Unlock()
		}
		if testing.Verbose() { // which tasks are the late ones: due offset (ms) -> lateness
			type lt struct {
				off, late, toStart time.Duration
			}
			var ls []lt
			bp.starts.mu.Lock()
			for id, at := range due {
				ls = append(ls, lt{time.Duration(at - base.UnixNano()), time.Duration(bp.starts.at[id] - at), 0})
			}
			bp.starts.mu.Unlock()
			slices.SortFunc(ls, func(a, b lt) int { return int(b.late - a.late) })
			for _, l := range ls[:min(len(ls), 50)] {
				b.Logf("due +%v late %v", l.off, l.late)
			}
			// Redis commands slower than 10 ms (its slowlog's default), if any.
			if slow, err := bp.rdb.SlowLogGet(b.Context(), 20).Result(); err == nil {
				for _, l := range slow {
					b.Logf("redis slowlog: %v at +%v: %q", l.Duration, l.Time.Sub(base).Round(time.Millisecond), l.Args)
				}
			}
			var gc debug.GCStats
			debug.ReadGCStats(&gc)
			for i, end := range gc.PauseEnd {
				if off := end.Sub(base); off > -50*time.Millisecond && off < 2500*time.Millisecond {
					b.Logf("gc pause ended +%v (%v)", off.Round(time.Millisecond), gc.Pause[i])
				}
			}
		}
		report(b, "due -> enqueued p50", float64(percentile(toQueue, 0.50))/1e6, "ms", "(store ms resolution; -lead when ahead)")
		report(b, "due -> enqueued p99", float64(percentile(toQueue, 0.99))/1e6, "ms", "")
		report(b, "enqueued -> started p99", float64(percentile(toStart, 0.99))/1e6, "ms", "")
	}
}

// BenchmarkIdle: Redis commands per second of an idle platform (every role
// and one executor).
func BenchmarkIdle(b *testing.B) {
	bp := startPlatform(b, 8)
	for b.Loop() {
		time.Sleep(2 * time.Second)
		before, served := bp.sent.commands.Load(), bp.commands(b)
		selfCPU, _ := bp.cpu(b)
		const window = 10 * time.Second
		time.Sleep(window)
		selfCPU2, _ := bp.cpu(b)
		// A loop spinning without touching Redis shows here only.
		report(b, "idle platform CPU", float64((selfCPU2-selfCPU).Milliseconds())/window.Seconds(), "cpu-ms/s", "(every role and an executor, one process)")
		report(b, "idle redis commands", float64(bp.sent.commands.Load()-before)/window.Seconds(), "cmds/s", "<= 5")
		// INFO itself is one call.
		report(b, "idle redis-server calls", float64(bp.commands(b)-served-1)/window.Seconds(), "calls/s", "(counts calls inside scripts)")
	}
}

// BenchmarkIsolation: a flood of 10,000 ready tasks for one lambda; a task
// of another lambda scheduled meanwhile starts after the time it takes a
// slot to free, not after the flood.
func BenchmarkIsolation(b *testing.B) {
	bp := startPlatform(b, 64)
	if _, err := bp.p.frontend.DeployLambda(b.Context(), &atfv1.DeployLambdaRequest{Name: "other", Wasm: testmodules.WAT(b, "hello")}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		const flood = 10000
		target := bp.status.done.Load() + flood
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range flood / 16 {
					bp.schedule(b, &atfv1.ScheduleRequest{Lambda: "noop"})
				}
			})
		}
		wg.Wait()
		scheduled := map[string]int64{}
		for range 20 {
			at := time.Now().UnixNano()
			scheduled[bp.schedule(b, &atfv1.ScheduleRequest{Lambda: "other"})] = at
			time.Sleep(20 * time.Millisecond)
		}
		bp.waitDone(b, target+20, 2*time.Minute)
		var lat []time.Duration
		bp.starts.mu.Lock()
		for id, at := range scheduled {
			lat = append(lat, time.Duration(bp.starts.at[id]-at))
		}
		bp.starts.mu.Unlock()
		report(b, "other lambda's pickup during a flood p50", float64(percentile(lat, 0.5))/1e6, "ms", "")
		report(b, "other lambda's pickup during a flood max", float64(percentile(lat, 1))/1e6, "ms", "a few ms")
	}
}

// benchProducers is the number of goroutines BenchmarkThroughput schedules
// from: ATF_BENCH_PRODUCERS, default 32.
func benchProducers() int {
	if v, err := strconv.Atoi(os.Getenv("ATF_BENCH_PRODUCERS")); err == nil && v > 0 {
		return v
	}
	return 32
}
