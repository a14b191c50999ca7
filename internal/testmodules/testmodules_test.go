package testmodules

import (
	"bytes"
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
