package testmodules

import (
	"bytes"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var magic = []byte("\x00asm")

func TestBuildCachesAndIsConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	got := make([][]byte, 4)
	for i := range got {
		wg.Go(func() { got[i] = Build(t, "echo") })
	}
	wg.Wait()
	for i, b := range got {
		if !bytes.HasPrefix(b, magic) {
			t.Fatalf("build %d: not a wasm module", i)
		}
		if &b[0] != &got[0][0] {
			t.Fatalf("build %d: not served from the cache", i)
		}
	}
}

func TestWAT(t *testing.T) {
	if b := WAT(t, "hello"); !bytes.HasPrefix(b, magic) {
		t.Fatal("hello.wat: not a wasm module")
	}
}

func TestGoModules(t *testing.T) {
	got := GoModules()
	for _, want := range []string{"echo", "exit", "flaky", "loop", "memhog", "envprobe", "panic", "flood", "stderrflood", "recurse"} {
		found := false
		for _, n := range got {
			found = found || n == want
		}
		if !found {
			t.Errorf("GoModules() = %v, lacks %q", got, want)
		}
	}
}

// Every C module builds (the benchmarks use some that no test runs).
func TestCModulesBuild(t *testing.T) {
	srcs, err := filepath.Glob(filepath.Join(dir, "c", "*.c"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no C modules: %v", err)
	}
	for _, src := range srcs {
		name := strings.TrimSuffix(filepath.Base(src), ".c")
		if b := C(t, name); !bytes.HasPrefix(b, magic) {
			t.Errorf("%s.c: not a wasm module", name)
		}
	}
}
