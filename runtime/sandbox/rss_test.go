//go:build linux

package sandbox_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// Peak RSS of an executor-like process (figures in BENCHMARKS.md,
// "Sandbox"). Each scenario runs in a child process — this test binary
// again, running only TestPeakRSSHelper — so that its peak resident set
// (getrusage maxrss, from os.ProcessState.SysUsage) is its own and not the
// test binary's history. The modules are compiled beforehand into the
// shared disk cache, so compilation (a one-off per module and executor)
// is not in the figures.
//
//	go test -run '^$' -bench ExecutorPeakRSS -benchtime 1x ./runtime/sandbox

const (
	rssScenarioEnv = "ATF_SANDBOX_RSS_SCENARIO"
	rssCacheEnv    = "ATF_SANDBOX_RSS_CACHE"
	rssModulesEnv  = "ATF_SANDBOX_RSS_MODULES"
)

// rssModules are the modules of the scenarios, by kind and name.
var rssModules = map[string]func(testing.TB, string) []byte{
	"wat:spin": testmodules.WAT, "wat:startloop": testmodules.WAT, "wat:callspin": testmodules.WAT,
	"wat:dagspin": testmodules.WAT, "wat:recurse": testmodules.WAT, "wat:recurseindirect": testmodules.WAT,
	"wat:bigmem": testmodules.WAT, "wat:oob": testmodules.WAT, "wat:unreachable": testmodules.WAT,
	"wat:sockets": testmodules.WAT, "c:xorshift": testmodules.C,
	"go:loop": testmodules.Build, "go:sleep": testmodules.Build, "go:memhog": testmodules.Build,
	"go:flood": testmodules.Build, "go:stderrflood": testmodules.Build, "go:panic": testmodules.Build,
	"go:recurse": testmodules.Build, "go:netdial": testmodules.Build, "go:echo": testmodules.Build,
}

func BenchmarkExecutorPeakRSS(b *testing.B) {
	cache := sharedCache(b)
	// Built here: the child's maxrss counts its own children (go build,
	// clang, wat2wasm) too.
	mods := b.TempDir()
	for key, build := range rssModules {
		_, name, _ := strings.Cut(key, ":")
		if err := os.WriteFile(filepath.Join(mods, strings.ReplaceAll(key, ":", "_")+".wasm"), build(b, name), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	for _, scenario := range []string{"idle", "hostile", "concurrent64", "hostile+concurrent64"} {
		b.Run(scenario, func(b *testing.B) {
			var kib int64
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSSHelper$", "-test.count=1", "-test.v")
				cmd.Env = append(os.Environ(), rssScenarioEnv+"="+scenario, rssCacheEnv+"="+cache, rssModulesEnv+"="+mods)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", scenario, err, out)
				}
				ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
				if !ok {
					b.Skip("no rusage")
				}
				kib = ru.Maxrss // KiB on Linux
			}
			b.ReportMetric(float64(kib)/1024, "MiB-peak-RSS")
		})
	}
}

// TestPeakRSSHelper is not a test: BenchmarkExecutorPeakRSS runs it in a
// child process to measure one scenario.
//
//   - idle: an Engine that ran one Go echo task;
//   - hostile: every hostile module at once on one Engine (endless loops
//     of every kind stopped by a 1 s timeout, runaway recursion, a memory
//     bomb, stdout and stderr floods, a module above its memory limit,
//     sockets), then an echo task;
//   - concurrent64: 64 Go tasks at once (each sleeps 300 ms, memory_mb=16);
//   - hostile+concurrent64: both at the same time.
func TestPeakRSSHelper(t *testing.T) {
	scenario := os.Getenv(rssScenarioEnv)
	if scenario == "" {
		t.Skip("helper for BenchmarkExecutorPeakRSS")
	}
	ctx := context.Background()
	e, err := sandbox.New(ctx, sandbox.Config{CompilationCacheDir: os.Getenv(rssCacheEnv)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	b := &testBundle{engine: e}
	mod := func(key string) []byte {
		wasm, err := os.ReadFile(filepath.Join(os.Getenv(rssModulesEnv), strings.ReplaceAll(key, ":", "_")+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return wasm
	}

	hostile := func() []sandbox.Job {
		var jobs []sandbox.Job
		add := func(wasm []byte, payload string, timeout time.Duration) {
			job := b.newJob(wasm, payload)
			if timeout > 0 {
				job.Timeout = timeout
			}
			jobs = append(jobs, job)
		}
		for _, name := range []string{"spin", "startloop", "callspin", "dagspin"} {
			add(mod("wat:"+name), "", time.Second)
		}
		for _, name := range []string{"recurse", "recurseindirect", "bigmem", "oob", "unreachable", "sockets"} {
			add(mod("wat:"+name), "", 0)
		}
		add(mod("go:loop"), "", time.Second)
		add(mod("go:sleep"), "60000", time.Second)
		add(mod("c:xorshift"), "100000000000", time.Second)
		add(mod("go:memhog"), "", 0)
		add(mod("go:flood"), "", 0)
		add(mod("go:stderrflood"), "", 0)
		add(mod("go:panic"), "", 0)
		add(mod("go:recurse"), "", 0)
		add(mod("go:netdial"), "127.0.0.1:9 127.0.0.1:9", 0)
		return jobs
	}
	concurrent := func() []sandbox.Job {
		jobs := make([]sandbox.Job, 64)
		for i := range jobs {
			jobs[i] = b.newJob(mod("go:sleep"), "300")
			jobs[i].MemoryMB = 16
		}
		return jobs
	}
	var jobs []sandbox.Job
	switch scenario {
	case "idle":
	case "hostile":
		jobs = hostile()
	case "concurrent64":
		jobs = concurrent()
	case "hostile+concurrent64":
		jobs = append(hostile(), concurrent()...)
	default:
		t.Fatalf("unknown scenario %q", scenario)
	}
	var wg sync.WaitGroup
	for _, job := range jobs {
		wg.Go(func() {
			if res := e.Run(ctx, job); res.Outcome == atfv1.Outcome_OUTCOME_FATAL &&
				res.Error.GetKind() == atfv1.ErrorKind_ERROR_KIND_INTERNAL {
				t.Errorf("%s", res.Error.GetMessage())
			}
		})
	}
	wg.Wait()
	if res := e.Run(ctx, b.newJob(mod("go:echo"), "still alive")); string(res.Output) != "still alive" {
		t.Errorf("echo after the scenario: outcome %s, error %v", res.Outcome, res.Error)
	}
}
