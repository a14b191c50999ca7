package store_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/platform/store"
	"github.com/redis/go-redis/v9"
)

// BenchmarkScheduleOne: one Schedule at a time (no pipelining), to read
// redis-server's cost of the schedule script.
func BenchmarkScheduleOne(b *testing.B) {
	rdb := redistest.Start(b)
	s := store.New(rdb, store.Options{})
	ctx := b.Context()
	if _, err := s.DeployLambda(ctx, store.Lambda{Namespace: "default", Name: "noop", SHA256: strings.Repeat("a", 64), MemoryMB: 64, MaxAttempts: 3, Timeout: time.Minute}); err != nil {
		b.Fatal(err)
	}
	rdb.ConfigResetStat(ctx)
	for b.Loop() {
		if _, _, err := s.Schedule(ctx, store.NewTask{Namespace: "default", Lambda: "noop", Payload: []byte(`{"n":1}`), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}); err != nil {
			b.Fatal(err)
		}
	}
	logCommandStats(b, rdb, b.N)
}

// logCommandStats logs redis-server's per-command figures since the last
// CONFIG RESETSTAT, with calls per op (ops of them).
func logCommandStats(b *testing.B, rdb redis.UniversalClient, ops int) {
	info, _ := rdb.Info(b.Context(), "commandstats").Result()
	for _, l := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(l, "cmdstat_") {
			f := strings.Split(l, ",")
			calls, _ := strconv.Atoi(strings.Split(f[0], "=")[1])
			b.Logf("%s (calls/op %.2f)", l, float64(calls)/float64(ops))
		}
	}
}

// BenchmarkTaskRedisCost drives the store alone through a due-now task's
// whole life, as the platform does at full load — ScheduleBatch of 100,
// Pop of up to 100, Claim of what came, concurrent SetResults — from 8
// goroutines, and reports redis-server's CPU per task: what bounds
// throughput on one Redis (it runs commands on one thread), without the
// platform's own CPU in the way. One op is 800 tasks (8 goroutines, a
// batch each).
func BenchmarkTaskRedisCost(b *testing.B) {
	rdb, s, lambdas := benchStore(b)
	ctx := b.Context()
	const batch, workers = 100, 8
	cycle := func() error { // one batch through its life
		nts := make([]store.NewTask, batch)
		for i := range nts {
			nts[i] = store.NewTask{Namespace: "default", Lambda: "noop", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		}
		if _, err := s.ScheduleBatch(ctx, nts); err != nil {
			return err
		}
		for left := batch; left > 0; {
			popped, err := s.Pop(ctx, lambdas, left, 0, "")
			if err != nil {
				return err
			}
			if len(popped) == 0 {
				continue // another worker took ours; theirs come next
			}
			reqs := make([]store.ClaimRequest, len(popped))
			for i, p := range popped {
				reqs[i] = store.ClaimRequest{TaskID: p.TaskID, LambdaVersion: 1}
			}
			claimed, err := s.Claim(ctx, reqs, 30*time.Second)
			if err != nil {
				return err
			}
			errs := make(chan error, len(claimed))
			for _, t := range claimed {
				go func() {
					_, err := s.SetResult(ctx, store.Result{TaskID: t.ID, Token: t.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Duration: 50 * time.Microsecond})
					errs <- err
				}()
			}
			for range claimed {
				if err := <-errs; err != nil {
					return err
				}
			}
			left -= len(popped)
		}
		return nil
	}
	if err := cycle(); err != nil { // load the scripts
		b.Fatal(err)
	}
	rdb.ConfigResetStat(ctx)
	before := redistest.CPU(b, rdb)
	done := 0
	for b.Loop() {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				if err := cycle(); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		done += batch * workers
	}
	b.ReportMetric(float64((redistest.CPU(b, rdb)-before).Microseconds())/float64(done), "redis-us/task")
	logCommandStats(b, rdb, done)
}

// benchStore is a store over a fresh redis-server — or over the one at
// ATF_BENCH_REDIS_ADDR, e.g. one run under valgrind — with a lambda
// "noop" deployed, and that lambda's queues as Pop takes them.
func benchStore(b *testing.B) (*redis.Client, *store.Store, []store.PopLambda) {
	var rdb *redis.Client
	if addr := os.Getenv("ATF_BENCH_REDIS_ADDR"); addr != "" {
		rdb = redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
		b.Cleanup(func() { _ = rdb.Close() })
	} else {
		rdb = redistest.Start(b)
	}
	s := store.New(rdb, store.Options{})
	if _, err := s.DeployLambda(b.Context(), store.Lambda{Namespace: "default", Name: "noop", SHA256: strings.Repeat("a", 64), MemoryMB: 64, MaxAttempts: 3, Timeout: time.Minute}); err != nil {
		b.Fatal(err)
	}
	return rdb, s, []store.PopLambda{{Queues: []string{s.QueueKey("default", "noop", 0)}, Running: s.RunningKey("default", "noop")}}
}

// BenchmarkTaskPhases runs due-now tasks through their life one phase at
// a time — all scheduled (ScheduleBatch of 100 from 8 goroutines), then
// all popped and claimed, then all results set — 2,400 tasks per op
// (ATF_BENCH_TASKS, a multiple of 800), and reports redis-server's CPU per task in each.
//
// CPU time on a shared machine swings by ±15% between runs; redis-server's
// instructions do not. With ATF_BENCH_REDIS_ADDR naming a redis-server run
// under callgrind and ATF_BENCH_CALLGRIND_PID its pid, the benchmark dumps
// callgrind's counts after each phase (callgrind_control -d), one file per
// phase; BENCHMARKS.md has the commands.
func BenchmarkTaskPhases(b *testing.B) {
	rdb, s, lambdas := benchStore(b)
	ctx := b.Context()
	n := 2400
	if v, err := strconv.Atoi(os.Getenv("ATF_BENCH_TASKS")); err == nil && v >= 800 {
		n = v / 800 * 800
	}
	const workers = 8
	dump := func(phase string) {
		if pid := os.Getenv("ATF_BENCH_CALLGRIND_PID"); pid != "" {
			if out, err := exec.Command("callgrind_control", "-d", phase, pid).CombinedOutput(); err != nil {
				b.Fatalf("callgrind_control: %v: %s", err, out)
			}
		}
	}
	var cpu [3]time.Duration
	round := 0
	for b.Loop() {
		round++
		dump(fmt.Sprintf("r%d-start", round))
		c0 := redistest.CPU(b, rdb)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range n / workers / 100 {
					nts := make([]store.NewTask, 100)
					for j := range nts {
						nts[j] = store.NewTask{Namespace: "default", Lambda: "noop", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
					}
					if _, err := s.ScheduleBatch(ctx, nts); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		dump(fmt.Sprintf("r%d-schedule", round))
		c1 := redistest.CPU(b, rdb)
		var mu sync.Mutex
		var claimed []store.Task
		for range workers {
			wg.Go(func() {
				for {
					popped, err := s.Pop(ctx, lambdas, 100, 0, "")
					if err != nil || len(popped) == 0 {
						return
					}
					reqs := make([]store.ClaimRequest, len(popped))
					for i, p := range popped {
						reqs[i] = store.ClaimRequest{TaskID: p.TaskID, LambdaVersion: 1}
					}
					got, err := s.Claim(ctx, reqs, 30*time.Second)
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					claimed = append(claimed, got...)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(claimed) != n {
			b.Fatalf("claimed %d of %d tasks", len(claimed), n)
		}
		dump(fmt.Sprintf("r%d-claim", round))
		c2 := redistest.CPU(b, rdb)
		next := make(chan store.Task)
		for range 64 { // as many results at once as an executor's slots finish
			wg.Go(func() {
				for t := range next {
					if _, err := s.SetResult(ctx, store.Result{TaskID: t.ID, Token: t.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Duration: 50 * time.Microsecond}); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for _, t := range claimed {
			next <- t
		}
		close(next)
		wg.Wait()
		dump(fmt.Sprintf("r%d-result", round))
		c3 := redistest.CPU(b, rdb)
		cpu[0], cpu[1], cpu[2] = cpu[0]+c1-c0, cpu[1]+c2-c1, cpu[2]+c3-c2
	}
	tasks := float64(round * n)
	for i, phase := range []string{"schedule", "claim", "result"} {
		b.ReportMetric(float64(cpu[i].Microseconds())/tasks, phase+"-redis-us/task")
	}
}
