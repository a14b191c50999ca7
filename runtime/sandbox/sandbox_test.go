package sandbox_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// testBundle is one Engine and the modules a test runs on it.
type testBundle struct {
	engine *sandbox.Engine
	loads  atomic.Int64 // calls of any Job.Load made by newJob
}

// setup returns a fresh Engine. Unless cfg names one, it uses a compilation
// cache shared by the whole test binary and filled by precompile.
func setup(t *testing.T, cfg sandbox.Config) *testBundle {
	t.Helper()
	ctx := context.Background()
	if cfg.CompilationCacheDir == "" {
		cfg.CompilationCacheDir = sharedCache(t)
	}
	e, err := sandbox.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testBundle{engine: e}
}

func sum(wasm []byte) string {
	s := sha256.Sum256(wasm)
	return hex.EncodeToString(s[:])
}

// newJob is a job for wasm with 64 MiB, a 10s timeout and the usual env.
func (b *testBundle) newJob(wasm []byte, payload string) sandbox.Job {
	return sandbox.Job{
		SHA256: sum(wasm),
		Load: func(context.Context) ([]byte, error) {
			b.loads.Add(1)
			return wasm, nil
		},
		Payload: []byte(payload),
		Env: map[string]string{
			"ATF_TASK_ID": "task-1",
			"ATF_LAMBDA":  "test",
			"ATF_ATTEMPT": "1",
			"TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
		Timeout:  10 * time.Second,
		MemoryMB: 64,
	}
}

func (b *testBundle) run(t *testing.T, job sandbox.Job) sandbox.Result {
	t.Helper()
	res := b.engine.Run(context.Background(), job)
	t.Logf("outcome=%s duration=%s error=%v", res.Outcome, res.Duration, res.Error)
	return res
}

// requireEcho checks that the Engine still runs a normal module.
func (b *testBundle) requireEcho(t *testing.T) {
	t.Helper()
	res := b.run(t, b.newJob(testmodules.Build(t, "echo"), "still alive"))
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != "still alive" {
		t.Fatalf("echo after a hostile module: outcome %s, output %q, error %v", res.Outcome, res.Output, res.Error)
	}
}

var (
	cacheOnce sync.Once
	cacheDir  string
	cacheErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cacheDir != "" {
		os.RemoveAll(cacheDir)
	}
	os.Exit(code)
}

// sharedCache returns a compilation cache directory holding every Go test
// module, compiled by TestPrecompileHelper in a test binary built without
// -race: wazero compiles ~15x slower under the race detector, and its cache
// key does not depend on it. (A `go run` helper would not do: wazero names the
// cache directory after its version, which test binaries report as "dev".)
func sharedCache(t testing.TB) string {
	t.Helper()
	names := testmodules.GoModules()
	wasm := make([][]byte, len(names))
	for i, name := range names {
		wasm[i] = testmodules.Build(t, name) // cached; t.Fatal in this goroutine
	}
	cacheOnce.Do(func() { cacheDir, cacheErr = precompile(names, wasm) })
	if cacheErr != nil {
		t.Fatal(cacheErr)
	}
	return cacheDir
}

const precompileEnv = "ATF_SANDBOX_PRECOMPILE"

func precompile(names []string, wasm [][]byte) (string, error) {
	dir, err := os.MkdirTemp("", "atf-sandbox-cache-")
	if err != nil {
		return "", err
	}
	cache := filepath.Join(dir, "cache")
	spec := []string{cache}
	for i, name := range names {
		path := filepath.Join(dir, name+".wasm")
		if err := os.WriteFile(path, wasm[i], 0o600); err != nil {
			return "", err
		}
		spec = append(spec, path)
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "test", "-count=1", "-run=^TestPrecompileHelper$", ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=", precompileEnv+"="+strings.Join(spec, string(os.PathListSeparator))) // never -race
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("precompile: %v\n%s", err, out)
	}
	return cache, nil
}

// TestPrecompileHelper is not a test: precompile runs it in a child process
// to fill a compilation cache. ATF_SANDBOX_PRECOMPILE is the cache directory
// then the .wasm files, separated like PATH.
func TestPrecompileHelper(t *testing.T) {
	spec := os.Getenv(precompileEnv)
	if spec == "" {
		t.Skip("helper for the other tests")
	}
	parts := filepath.SplitList(spec)
	ctx := context.Background()
	e, err := sandbox.New(ctx, sandbox.Config{CompilationCacheDir: parts[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	var wg sync.WaitGroup
	for _, path := range parts[1:] {
		wg.Go(func() {
			wasm, err := os.ReadFile(path)
			if err == nil {
				_, err = e.Inspect(ctx, wasm)
			}
			if err != nil {
				t.Errorf("%s: %v", path, err)
			}
		})
	}
	wg.Wait()
}
