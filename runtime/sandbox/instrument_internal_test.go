package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

func watBytes(t *testing.T, name string) []byte { return watFile(t, name) }

func watFile(t testing.TB, name string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".wasm")
	if msg, err := exec.Command("wat2wasm", "../../internal/testmodules/wat/"+name+".wat", "-o", out).CombinedOutput(); err != nil {
		t.Skipf("wat2wasm: %v %s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInstrumentedSpinStops(t *testing.T) {
	ctx := context.Background()
	ins, err := instrument(watBytes(t, "spin"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.InstantiateWithConfig(ctx, ins.wasm, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGuard(mod)
	if err != nil {
		t.Fatal(err)
	}
	rc, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	disarm := g.arm(rc)
	start := time.Now()
	_, err = mod.ExportedFunction("_start").Call(rc)
	disarm()
	t.Logf("err=%v after %s", err, time.Since(start))
	if err == nil {
		t.Fatal("no error")
	}
}

// FuzzInstrument: instrument never panics, and when wazero accepts the
// original module it accepts the instrumented one.
func FuzzInstrument(f *testing.F) {
	for _, name := range []string{"spin", "hello", "recurse", "reactor", "badreactor", "reactorhost", "reactorinitloop", "bigmem", "oob", "unreachable", "startloop", "callspin", "manyimports", "nostart"} {
		out := filepath.Join(f.TempDir(), name+".wasm")
		if err := exec.Command("wat2wasm", "../../internal/testmodules/wat/"+name+".wat", "-o", out).Run(); err != nil {
			continue
		}
		b, _ := os.ReadFile(out)
		f.Add(b)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		ins, err := instrument(wasm, 1000)
		if err != nil {
			return
		}
		orig, err := r.CompileModule(ctx, wasm)
		if err != nil {
			return
		}
		orig.Close(ctx)
		m, err := r.CompileModule(ctx, ins.wasm)
		if err != nil {
			t.Fatalf("the original compiles, the instrumented module does not: %v", err)
		}
		m.Close(ctx)
	})
}
