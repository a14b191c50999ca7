package store_test

import (
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
// platform's own CPU in the way. One op is one task.
func BenchmarkTaskRedisCost(b *testing.B) {
	rdb := redistest.Start(b)
	s := store.New(rdb, store.Options{})
	ctx := b.Context()
	if _, err := s.DeployLambda(ctx, store.Lambda{Namespace: "default", Name: "noop", SHA256: strings.Repeat("a", 64), MemoryMB: 64, MaxAttempts: 3, Timeout: time.Minute}); err != nil {
		b.Fatal(err)
	}
	lambdas := []store.PopLambda{{Queues: []string{s.QueueKey("default", "noop", 0)}, Running: s.RunningKey("default", "noop")}}
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
	before := redisCPU(b, rdb)
	tasks := 0
	for b.Loop() {
		tasks++
		if tasks%(batch*workers) != 0 {
			continue
		}
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				if err := cycle(); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if tasks < batch*workers {
		b.Skipf("%d ops: run with -benchtime of at least %dx", tasks, batch*workers)
	}
	done := tasks / (batch * workers) * batch * workers
	b.ReportMetric(float64((redisCPU(b, rdb)-before).Microseconds())/float64(done), "redis-us/task")
	logCommandStats(b, rdb, done)
}

// redisCPU is the CPU time redis-server has used so far.
func redisCPU(b *testing.B, rdb redis.UniversalClient) time.Duration {
	info, err := rdb.Info(b.Context(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, l := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(l, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += time.Duration(f * float64(time.Second))
		}
	}
	return total
}
