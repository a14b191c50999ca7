// Package wasmrun builds an example lambda for GOOS=wasip1 and runs it in
// wazero the way atf runs a task: payload on stdin, result on stdout, logs on
// stderr, and the ATF_* environment of the Wasm contract.
//
// It exists for the examples' tests only.
package wasmrun

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// Timeout bounds one run of a module, so that a guest that hangs fails its
// test instead of the whole test binary.
const Timeout = 30 * time.Second

// Env is the environment a module sees, as the executor would set it.
var Env = map[string]string{
	"ATF_TASK_ID": "01TESTTASK0000000000000000",
	"ATF_LAMBDA":  "example",
	"ATF_ATTEMPT": "1",
	"TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}

type build struct {
	once     sync.Once
	wasm     []byte
	runtime  wazero.Runtime
	compiled wazero.CompiledModule
	err      error
}

// builds maps a package pattern to its *build. A runtime and its compiled
// module live as long as the test process: compiling a Go module takes
// seconds, instantiating it milliseconds.
var builds sync.Map

// Build compiles pkg (a package as `go build` takes it, resolved from the
// test's working directory, e.g. ".") with GOOS=wasip1 GOARCH=wasm and
// returns the module's bytes. A package is built once per test process; the
// binary lives in the first caller's t.TempDir and its bytes in memory.
func Build(t testing.TB, pkg string) []byte {
	t.Helper()
	return load(t, pkg).wasm
}

// BuildReactor is Build with -buildmode=c-shared: a reactor (_initialize
// and atf_handle, runtime/sandbox/doc.go), which Run cannot run; run it
// with runtime/sandbox.
func BuildReactor(t testing.TB, pkg string) []byte {
	t.Helper()
	v, _ := builds.LoadOrStore("reactor:"+pkg, new(build))
	b := v.(*build)
	b.once.Do(func() { b.err = b.build(t.TempDir(), pkg, "-buildmode=c-shared") })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.wasm
}

func load(t testing.TB, pkg string) *build {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, new(build))
	b := v.(*build)
	b.once.Do(func() { b.err = b.build(t.TempDir(), pkg) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b
}

func (b *build) build(dir, pkg string, flags ...string) error {
	out := filepath.Join(dir, "lambda.wasm")
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, pkg)...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("GOOS=wasip1 GOARCH=wasm go build %s %s: %v\n%s", strings.Join(flags, " "), pkg, err, stderr.Bytes())
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	if len(flags) > 0 {
		b.wasm = wasm
		return nil
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled, err := r.CompileModule(ctx, wasm)
	if err != nil {
		r.Close(ctx)
		return fmt.Errorf("compiling %s: %w", pkg, err)
	}
	b.wasm, b.runtime, b.compiled = wasm, r, compiled
	return nil
}

// Run builds pkg (see Build) and runs it once as a WASI command with stdin as
// its input, in a fresh instance. It returns what the module wrote and its
// exit code; a trap or a timeout fails the test.
func Run(t testing.TB, pkg string, stdin []byte) (stdout, stderr []byte, exitCode uint32) {
	t.Helper()
	b := load(t, pkg)

	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()

	var out, errOut bytes.Buffer
	cfg := wazero.NewModuleConfig().
		WithName(""). // anonymous, so instances may run side by side
		WithArgs("lambda").
		WithStdin(bytes.NewReader(stdin)).
		WithStdout(&out).
		WithStderr(&errOut).
		WithSysWalltime().
		WithSysNanotime().
		WithSysNanosleep().
		WithRandSource(rand.Reader)
	for k, v := range Env {
		cfg = cfg.WithEnv(k, v)
	}

	mod, err := b.runtime.InstantiateModule(ctx, b.compiled, cfg)
	if mod != nil {
		defer mod.Close(ctx)
	}
	var exit *sys.ExitError
	switch {
	case err == nil:
		return out.Bytes(), errOut.Bytes(), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return out.Bytes(), errOut.Bytes(), exit.ExitCode()
	default:
		t.Fatalf("running %s: %v\nstderr:\n%s", pkg, err, errOut.Bytes())
		return nil, nil, 0
	}
}
