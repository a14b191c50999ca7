package sandbox_test

import (
	"context"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// Figures of these benchmarks are in BENCHMARKS.md, section "Sandbox".

func benchEngine(b *testing.B, dir string) *sandbox.Engine {
	b.Helper()
	return benchEngineConfig(b, sandbox.Config{CompilationCacheDir: dir})
}

func benchEngineConfig(b *testing.B, cfg sandbox.Config) *sandbox.Engine {
	b.Helper()
	e, err := sandbox.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	return e
}

func benchJob(wasm []byte, payload string) sandbox.Job {
	return sandbox.Job{
		SHA256:   sum(wasm),
		Load:     func(context.Context) ([]byte, error) { return wasm, nil },
		Payload:  []byte(payload),
		Env:      map[string]string{"ATF_TASK_ID": "t", "ATF_LAMBDA": "bench", "ATF_ATTEMPT": "1"},
		Timeout:  10 * time.Second,
		MemoryMB: 64,
	}
}

// BenchmarkRunOverhead is the per-task cost once the module is compiled.
// Command model: instantiate, run a module that echoes a small payload,
// collect, close. Reactor model (-reactor): take the pooled instance, call
// atf_handle with the payload, collect, put it back; every
// Config.ReactorMaxUses (1000) tasks the instance is replaced, which the
// figure includes; go-reactor-reuse never replaces it.
func BenchmarkRunOverhead(b *testing.B) {
	for _, tc := range []struct {
		name    string
		wasm    func(b *testing.B) []byte
		payload string
		cfg     sandbox.Config
	}{
		{"wat", func(b *testing.B) []byte { return testmodules.WAT(b, "hello") }, `{"name":"Ada"}`, sandbox.Config{}},
		{"c", func(b *testing.B) []byte { return testmodules.C(b, "echo") }, `{"name":"Ada"}`, sandbox.Config{}},
		{"go", func(b *testing.B) []byte { return testmodules.Build(b, "echo") }, `{"name":"Ada"}`, sandbox.Config{}},
		{"wat-reactor", func(b *testing.B) []byte { return testmodules.WAT(b, "reactor") }, `e{"name":"Ada"}`, sandbox.Config{}},
		{"c-reactor", func(b *testing.B) []byte { return testmodules.C(b, "reactorecho") }, `{"name":"Ada"}`, sandbox.Config{}},
		{"go-reactor", func(b *testing.B) []byte { return testmodules.Build(b, "reactorecho") }, `{"name":"Ada"}`, sandbox.Config{}},
		{"go-reactor-reuse", func(b *testing.B) []byte { return testmodules.Build(b, "reactorecho") }, `{"name":"Ada"}`,
			sandbox.Config{ReactorMaxUses: math.MaxInt}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tc.cfg.CompilationCacheDir = b.TempDir()
			e := benchEngineConfig(b, tc.cfg)
			job := benchJob(tc.wasm(b), tc.payload)
			if res := e.Run(context.Background(), job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
				b.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if res := e.Run(context.Background(), job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
					b.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
				}
			}
		})
	}
}

// BenchmarkFirstTaskAfterRestart: an executor compiled the Go echo module
// into its disk cache and restarted; the first task on the new Engine
// loads the compiled code instead of compiling (disk-cache), against a
// cold compile (no-cache).
func BenchmarkFirstTaskAfterRestart(b *testing.B) {
	wasm := testmodules.Build(b, "echo")
	for _, cached := range []bool{true, false} {
		name := "no-cache"
		if cached {
			name = "disk-cache"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			if cached {
				e := benchEngine(b, dir)
				if _, err := e.Inspect(context.Background(), wasm); err != nil {
					b.Fatal(err)
				}
				e.Close(context.Background())
			}
			var total time.Duration
			for b.Loop() {
				d := dir
				if !cached {
					d = b.TempDir()
				}
				b.StopTimer()
				e := benchEngine(b, d)
				b.StartTimer()
				start := time.Now()
				res := e.Run(context.Background(), benchJob(wasm, "x"))
				total += time.Since(start)
				if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
					b.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
				}
				b.StopTimer()
				e.Close(context.Background())
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-task")
		})
	}
}

// BenchmarkConcurrent64 runs 64 Go tasks at once (each sleeps 300 ms) and
// reports the growth of the process's resident set per concurrent sandbox.
func BenchmarkConcurrent64(b *testing.B) {
	const n = 64
	e := benchEngine(b, b.TempDir())
	job := benchJob(testmodules.Build(b, "sleep"), "300")
	job.MemoryMB = 16
	e.Run(context.Background(), benchJob(testmodules.Build(b, "sleep"), "0")) // compile
	var perSandbox float64
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		base := rssBytes()
		var peak atomic.Int64
		done := make(chan struct{})
		go func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
					if r := rssBytes(); r > peak.Load() {
						peak.Store(r)
					}
				}
			}
		}()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if res := e.Run(context.Background(), job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
					b.Errorf("outcome %s, error %v", res.Outcome, res.Error)
				}
			})
		}
		wg.Wait()
		close(done)
		perSandbox = float64(peak.Load()-base) / n / (1 << 20)
	}
	b.ReportMetric(perSandbox, "MiB-RSS/sandbox")
}

// rssBytes is the process's resident set size (Linux), 0 elsewhere.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}
