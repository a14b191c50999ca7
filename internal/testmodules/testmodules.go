// Package testmodules builds the WebAssembly modules that tests run in the
// sandbox: Go programs under internal/testmodules/<name> (GOOS=wasip1), C
// programs under internal/testmodules/c and hand-written WAT under
// internal/testmodules/wat.
//
// A Go or C module whose name starts with "reactor" is built as a reactor
// (runtime/sandbox/doc.go, "Reactor ABI (v1)"): Go with
// -buildmode=c-shared, C with -mexec-model=reactor.
package testmodules

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// IsReactor reports whether the Go or C module name is built as a reactor.
func IsReactor(name string) bool { return strings.HasPrefix(name, "reactor") }

// dir is the directory of this source file: internal/testmodules.
var dir = func() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testmodules: cannot locate own source")
	}
	return filepath.Dir(file)
}()

var (
	tmpOnce sync.Once
	tmpDir  string
	tmpErr  error

	mu    sync.Mutex
	cache = map[string]*build{}
)

type build struct {
	once sync.Once
	wasm []byte
	err  error
}

// Build compiles internal/testmodules/<name> with GOOS=wasip1 GOARCH=wasm
// (and -buildmode=c-shared when IsReactor(name)) into a per-process temp dir and returns the .wasm bytes. Results are cached
// by name for the life of the process; Build is safe for concurrent use. It
// calls t.Fatal on error.
func Build(t testing.TB, name string) []byte {
	t.Helper()
	return cached(t, "go:"+name, func() ([]byte, error) { return goBuild(name) })
}

// WAT compiles internal/testmodules/wat/<name>.wat with wat2wasm (Debian
// package wabt) and returns the .wasm bytes, cached like Build. When
// wat2wasm is not installed it calls t.Fatal if the environment variable CI
// is "true", and t.Skip otherwise.
func WAT(t testing.TB, name string) []byte {
	t.Helper()
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		msg := "wat2wasm not found on PATH: install wabt (apt-get install wabt) to run the WAT tests"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return cached(t, "wat:"+name, func() ([]byte, error) { return watBuild(name) })
}

// C compiles internal/testmodules/c/<name>.c with clang --target=wasm32-wasi
// -O2 (Debian packages clang, lld, wasi-libc, libclang-rt-dev-wasm32) and
// returns the .wasm bytes, cached like Build. When clang is missing it
// calls t.Fatal if CI is "true", and t.Skip otherwise.
func C(t testing.TB, name string) []byte {
	t.Helper()
	if _, err := exec.LookPath("clang"); err != nil {
		msg := "clang not found on PATH: install clang lld wasi-libc libclang-rt-dev-wasm32 to run the C test modules"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return cached(t, "c:"+name, func() ([]byte, error) { return cBuild(name) })
}

func cBuild(name string) ([]byte, error) {
	src := filepath.Join(dir, "c", name+".c")
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("testmodules: no C module %q: %w", name, err)
	}
	out, err := outDir()
	if err != nil {
		return nil, fmt.Errorf("testmodules: temp dir: %w", err)
	}
	wasm := filepath.Join(out, "c-"+name+".wasm")
	args := []string{"--target=wasm32-wasi", "-O2", "-o", wasm, src}
	if IsReactor(name) {
		args = append(args, "-mexec-model=reactor")
	}
	if msg, err := exec.Command("clang", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testmodules: clang %s: %v\n%s", name, err, msg)
	}
	return os.ReadFile(wasm)
}

func cached(t testing.TB, key string, f func() ([]byte, error)) []byte {
	t.Helper()
	mu.Lock()
	b, ok := cache[key]
	if !ok {
		b = &build{}
		cache[key] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.wasm, b.err = f() })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.wasm
}

func outDir() (string, error) {
	tmpOnce.Do(func() {
		tmpDir, tmpErr = os.MkdirTemp("", "atf-testmodules-")
	})
	return tmpDir, tmpErr
}

func goBuild(name string) ([]byte, error) {
	src := filepath.Join(dir, name)
	if _, err := os.Stat(filepath.Join(src, "main.go")); err != nil {
		return nil, fmt.Errorf("testmodules: no module %q: %w", name, err)
	}
	out, err := outDir()
	if err != nil {
		return nil, fmt.Errorf("testmodules: temp dir: %w", err)
	}
	wasm := filepath.Join(out, name+".wasm")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	args := []string{"build", "-o", wasm}
	if IsReactor(name) {
		args = append(args, "-buildmode=c-shared")
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testmodules: go build %s: %v\n%s", name, err, msg)
	}
	return os.ReadFile(wasm)
}

func watBuild(name string) ([]byte, error) {
	src := filepath.Join(dir, "wat", name+".wat")
	if _, err := os.Stat(src); err != nil {
		return nil, fmt.Errorf("testmodules: no WAT module %q: %w", name, err)
	}
	out, err := outDir()
	if err != nil {
		return nil, fmt.Errorf("testmodules: temp dir: %w", err)
	}
	wasm := filepath.Join(out, "wat-"+name+".wasm")
	if msg, err := exec.Command("wat2wasm", src, "-o", wasm).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testmodules: wat2wasm %s: %v\n%s", name, err, msg)
	}
	return os.ReadFile(wasm)
}

// GoModules lists the Go test modules by name (the directories that hold a
// main.go), sorted.
func GoModules() []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		panic(err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "main.go")); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}
