package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/platform/redistest"
)

// BenchmarkThroughputProcesses is BenchmarkThroughput's batch case with
// the platform as a user runs it: an `atf server` process (frontend,
// consumer, controller, hsc) and an `atf executor` process with its
// default slots, both with default flags, and the tasks scheduled over
// HTTP by Connect clients (ScheduleBatch of 100 from 8 goroutines). What
// the in-process benchmark leaves out shows here: the RPCs between
// executor and server (NextWork, SetResult, heartbeats) and the
// frontend's. It prints each process's CPU per task.
func BenchmarkThroughputProcesses(b *testing.B) {
	rs := redistest.StartServer(b)
	srv := start(b, true, "server", "--listen", "127.0.0.1:0", "--redis", rs.URL())
	ex := start(b, false, append([]string{"executor", "--server", srv.url, "--cache-dir", b.TempDir(), "--health-listen", "127.0.0.1:0"}, benchExecutorFlags()...)...)
	metricsURL := waitLogged(b, ex, regexp.MustCompile(`health on (http://\S+)`)) + "/metrics"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	lambdas := atfv1connect.NewLambdaServiceClient(client, srv.url)
	if _, err := lambdas.DeployLambda(b.Context(), &atfv1.DeployLambdaRequest{Name: "noop-reactor", Wasm: testmodules.WAT(b, "reactor")}); err != nil {
		b.Fatal(err)
	}
	tasks := atfv1connect.NewTaskServiceClient(client, srv.url)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	b.Cleanup(func() { rdb.Close() })

	run := func(n int) time.Duration {
		target := finishedTasks(b, metricsURL) + n
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for next.Add(100) <= int64(n) {
					req := &atfv1.ScheduleBatchRequest{Tasks: make([]*atfv1.ScheduleRequest, 100)}
					for i := range req.Tasks {
						req.Tasks[i] = &atfv1.ScheduleRequest{Lambda: "noop-reactor"}
					}
					if _, err := tasks.ScheduleBatch(b.Context(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		for deadline := time.Now().Add(2 * time.Minute); finishedTasks(b, metricsURL) < target; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) || b.Failed() {
				b.Fatalf("%d of %d tasks finished in 2 minutes", finishedTasks(b, metricsURL)-target+n, n)
			}
		}
		return time.Since(start)
	}
	run(2000) // warm up: compile the module, fill connection pools

	const n = 20000
	for b.Loop() {
		srvCPU, exCPU, redisCPU := processCPU(b, srv), processCPU(b, ex), redistest.CPU(b, rdb)
		took := run(n)
		perTask := func(d time.Duration) float64 { return float64(d.Microseconds()) / n }
		srvPer, exPer, redisPer := perTask(processCPU(b, srv)-srvCPU), perTask(processCPU(b, ex)-exCPU), perTask(redistest.CPU(b, rdb)-redisCPU)
		report(b, "throughput", float64(n)/took.Seconds(), "tasks/s", ">= 15000")
		report(b, "atf server CPU per task", srvPer, "server-us/task", "(frontend, consumer, controller, hsc)")
		report(b, "atf executor CPU per task", exPer, "executor-us/task", "")
		report(b, "redis-server CPU per task", redisPer, "redis-us/task", "")
		report(b, "2-core ceiling from CPU", 2e6/(srvPer+exPer+redisPer), "ceiling-tasks/s", "")
	}
}

// waitLogged waits for a line of p's output matching re and returns its
// first group.
func waitLogged(b *testing.B, p *proc, re *regexp.Regexp) string {
	b.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(p.logs.String()); m != nil {
			return m[1]
		}
	}
	b.Fatalf("no line matching %s in 30s:\n%s", re, p.logs)
	return ""
}

// benchExecutorFlags are extra `atf executor` flags from
// ATF_BENCH_EXECUTOR_FLAGS (space-separated), e.g. "--slots 256".
func benchExecutorFlags() []string { return strings.Fields(os.Getenv("ATF_BENCH_EXECUTOR_FLAGS")) }

// finishedTasks is the executor's atf_tasks_finished_total, all labels.
func finishedTasks(b *testing.B, metricsURL string) int {
	b.Helper()
	req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, metricsURL, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity") // uncompressed: cheaper for the executor to serve
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "atf_tasks_finished_total") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			b.Fatalf("metric line %q: %v", line, err)
		}
		total += v
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return int(total)
}

// processCPU is the user and system CPU time process p has used so far
// (/proc/<pid>/stat, in clock ticks of 10 ms).
func processCPU(b *testing.B, p *proc) time.Duration {
	b.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
