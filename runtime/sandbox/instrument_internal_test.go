package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
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
	if _, err := runGuarded(t, watBytes(t, "spin"), 1000, 200*time.Millisecond); err == nil {
		t.Fatal("no error")
	}
}

// instantiateGuarded instantiates an instrumented module (without running
// its start) in a runtime closed when the test ends, with its guard.
func instantiateGuarded(t *testing.T, instrumented []byte) (api.Module, guard) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { r.Close(ctx) })
	mod, err := r.InstantiateWithConfig(ctx, instrumented, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGuard(mod)
	if err != nil {
		t.Fatal(err)
	}
	return mod, g
}

// runGuarded instruments wasm with the given stack budget, runs its _start
// under a guard armed with a timeout, and returns how long it ran.
func runGuarded(t *testing.T, wasm []byte, budget int32, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	ins, err := instrument(wasm, budget)
	if err != nil {
		t.Fatal(err)
	}
	mod, g := instantiateGuarded(t, ins.wasm)
	rc, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	disarm := g.arm(rc)
	start := time.Now()
	_, err = mod.ExportedFunction("_start").Call(rc)
	disarm()
	elapsed := time.Since(start)
	t.Logf("err=%v after %s", err, elapsed)
	return elapsed, err
}

// The inner clones of recursive functions hand their fuel back through
// $fuel and may leave 0 there; the functions counting $fuel must still
// reach their slow path (a test for zero after the decrement would not
// fire for 2^32 calls). $rec, entered callPeriod times from a full $fuel,
// leaves 0; then a DAG of 2^40 calls without a loop or recursion (its
// every ~9th level counting $fuel, as in dagspin.wat) must still stop.
func TestInstrumentedFuelHandoffStops(t *testing.T) {
	var src strings.Builder
	src.WriteString("(module\n  (memory 1)\n")
	src.WriteString("  (func $rec (param i32) (if (local.get 0) (then (call $rec (i32.sub (local.get 0) (i32.const 1))))))\n")
	for i := range 40 {
		fmt.Fprintf(&src, "  (func $f%d (call $f%d) (call $f%d))\n", i, i+1, i+1)
	}
	fmt.Fprintf(&src, "  (func $f40)\n  (func (export \"_start\") (call $rec (i32.const %d)) (call $f0)))", callPeriod-1)
	elapsed, err := runGuarded(t, watText(t, src.String()), 1<<19, 200*time.Millisecond)
	if err == nil {
		t.Fatal("no error")
	}
	if elapsed > 700*time.Millisecond {
		t.Errorf("stopped after %s, want 200 ms + 500 ms at most", elapsed)
	}
}

// A guest spinning in recursion (threaded clones, no loop) leaves native
// code through its slow path often enough that the Go GC can stop the
// world meanwhile: wazero's native code cannot be preempted, so a guest
// that never left it would stall runtime.GC (and the whole process).
func TestInstrumentedRecursionLetsGCRun(t *testing.T) {
	src := `(module
  (func $fib (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add
        (call $fib (i32.sub (local.get 0) (i32.const 1)))
        (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "_start") (drop (call $fib (i32.const 60)))))`
	ctx := context.Background()
	ins, err := instrument(watText(t, src), 1<<19)
	if err != nil {
		t.Fatal(err)
	}
	if ins.stats.rec != 1 {
		t.Fatalf("stats %+v, want one threaded function", ins.stats)
	}
	mod, g := instantiateGuarded(t, ins.wasm)
	rc, cancel := context.WithCancel(ctx)
	defer cancel()
	disarm := g.arm(rc)
	done := make(chan error, 1)
	go func() { _, err := mod.ExportedFunction("_start").Call(rc); done <- err }()
	time.Sleep(50 * time.Millisecond) // let it spin
	for range 5 {
		start := time.Now()
		runtime.GC()
		if d := time.Since(start); d > time.Second {
			t.Errorf("runtime.GC took %s while the guest spun", d)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the guest returned before it was stopped: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("no error")
		}
	case <-time.After(time.Second):
		t.Error("not stopped a second after the cancel")
	}
	disarm()
}

// FuzzInstrument: instrument never panics, and when wazero accepts the
// original module it accepts the instrumented one.
func FuzzInstrument(f *testing.F) {
	for _, name := range []string{"spin", "hello", "recurse", "reactor", "badreactor", "reactorhost", "reactorinitloop", "bigmem", "oob", "unreachable", "startloop", "callspin", "manyimports", "nostart", "calls", "dagspin", "recurseindirect", "fib"} {
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

// watText compiles WAT source with wat2wasm.
func watText(t *testing.T, src string) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "m.wat"), filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(in, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command("wat2wasm", in, "-o", out).CombinedOutput(); err != nil {
		t.Skipf("wat2wasm: %v %s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Which functions pay what (callgraph.go).
func TestInstrumentClassifies(t *testing.T) {
	type stats = struct{ rec, fuel, plain, stack int }
	// a chain of 40 non-recursive functions with 4,000 locals each: the
	// uncharged frames would weigh 160,000 units, over unaccountedLimit.
	var chain strings.Builder
	chain.WriteString("(module\n")
	for i := range 40 {
		fmt.Fprintf(&chain, "  (func $c%d (local i32 i32) (local", i)
		chain.WriteString(strings.Repeat(" i64", 4000))
		if i < 39 {
			fmt.Fprintf(&chain, ") (call $c%d))\n", i+1)
		} else {
			chain.WriteString("))\n")
		}
	}
	chain.WriteString("  (func (export \"_start\") (call $c0)))")
	for _, tc := range []struct {
		name string
		wasm []byte
		want stats
	}{
		// fib is recursive; _start is not and has no loop.
		{"fib", watBytes(t, "fib"), stats{rec: 1, plain: 1}},
		// sum, pair, even, odd and ind recur; tri loops; sq is in the table.
		{"calls", watBytes(t, "calls"), stats{rec: 5, fuel: 2, plain: 1}},
		// 2^48 calls without a loop: every ~9th level counts fuel.
		{"dagspin", watBytes(t, "dagspin"), stats{fuel: 5, plain: 44}},
		{"spin", watBytes(t, "spin"), stats{fuel: 1}},
		// 16 frames of 4,006 units fit under unaccountedLimit: the 24
		// other functions of the chain charge the stack.
		{"chain", watText(t, chain.String()), stats{plain: 41, stack: 24}},
	} {
		ins, err := instrument(tc.wasm, 1000)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if ins.stats != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, ins.stats, tc.want)
		}
	}
}

// Modules whose vectors declare more entries than their bytes could hold:
// wazero's decoder allocates by the declared count and the process dies
// ("fatal error: runtime: out of memory"). instrument, which runs before
// every compilation, refuses them (or drops an optional name section).
func TestInstrumentRefusesCountBombs(t *testing.T) {
	hdr := "\x00asm\x01\x00\x00\x00"
	big := "\xff\xff\xff\xff\x0f" // 2^32-1
	sec := func(id byte, body string) string {
		return string([]byte{id, byte(len(body))}) + body
	}
	for name, wasm := range map[string]string{
		"elements":      sec(9, big+"0"),
		"globals":       sec(6, big+"0"),
		"tables":        sec(4, big+"0"),
		"imports":       sec(2, big+"0"),
		"data segments": sec(11, big+"0"),
		"data bytes":    sec(5, "\x01\x00\x01") + sec(11, "\x01\x01"+big),
		"element funcs": sec(1, "\x01\x60\x00\x00") + sec(3, "\x01\x00") + sec(4, "\x01\x70\x00\x01") + sec(9, "\x01\x00\x41\x00\x0b"+big) + sec(10, "\x01\x02\x00\x0b"),
		"element exprs": sec(4, "\x01\x70\x00\x01") + sec(9, "\x01\x05\x70"+big),
		"tags":          sec(13, big+"0"),
		"code":          sec(10, big+"0"),
		"func section":  sec(3, big+"0"),
		"type valtypes": sec(1, "\x01\x60"+big),
	} {
		if _, err := instrument([]byte(hdr+wasm), 1000); err == nil {
			t.Errorf("%s: instrumented", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// A name section with a bomb is dropped; the module still compiles.
	names := "\x04name" + "\x01\x05" + big
	wasm := hdr + sec(1, "\x01\x60\x00\x00") + sec(3, "\x01\x00") + sec(10, "\x01\x02\x00\x0b") + sec(0, names)
	ins, err := instrument([]byte(wasm), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ins.wasm, []byte("name")) {
		t.Error("the name section was kept")
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, ins.wasm); err != nil {
		t.Error(err)
	}
}

// A reference past the module's own functions is invalid, but after
// instrumentation it would name an inner clone, which takes its stack
// budget and fuel as parameters: refused wherever it can appear.
func TestInstrumentRefusesIndicesPastTheModule(t *testing.T) {
	hdr := "\x00asm\x01\x00\x00\x00"
	sec := func(id byte, body string) string { return string([]byte{id, byte(len(body))}) + body }
	// one recursive function: $f calls itself
	types, funcs, code := sec(1, "\x01\x60\x00\x00"), sec(3, "\x01\x00"), sec(10, "\x01\x04\x00\x10\x00\x0b")
	table := sec(4, "\x01\x70\x00\x01")
	for name, wasm := range map[string]string{
		"export":  types + funcs + sec(7, "\x01\x01x\x00\x01") + code,
		"start":   types + funcs + sec(8, "\x01") + code,
		"element": types + funcs + table + sec(9, "\x01\x00\x41\x00\x0b\x01\x01") + code,
		"global":  types + funcs + sec(6, "\x01\x70\x00\xd2\x01\x0b") + code,
		"call":    types + funcs + sec(10, "\x01\x04\x00\x10\x01\x0b"),
	} {
		if _, err := instrument([]byte(hdr+wasm), 1000); err == nil {
			t.Errorf("%s: instrumented", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := instrument([]byte(hdr+types+funcs+sec(7, "\x01\x01x\x00\x00")+code), 1000); err != nil {
		t.Errorf("a valid export: %v", err)
	}
}

// Loop bodies become the then branch of the loop head's test, so every
// branch inside a loop crosses one more label: the rewritten module must
// compute what the original does, across loops with params, br_table,
// branches out of nested loops, returns from inside loops of threaded
// clones, and more than loopPeriod iterations (the slow path branches back
// to the loop head with the loop's params).
func TestInstrumentedLoopsKeepTheirMeaning(t *testing.T) {
	const src = `(module
  (memory 1)
  ;; nested loops, br_if to the outer loop and out of both
  (func (export "nested") (param $n i32) (result i32) (local $i i32) (local $j i32) (local $s i32)
    (block $out
      (loop $outer
        (local.set $j (i32.const 0))
        (loop $inner
          (local.set $s (i32.add (local.get $s) (i32.mul (local.get $i) (local.get $j))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br_if $out (i32.gt_u (local.get $s) (i32.const 100000000)))
          (br_if $inner (i32.lt_u (local.get $j) (i32.const 7)))
        )
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $outer (i32.lt_u (local.get $i) (local.get $n)))
      )
    )
    (local.get $s))
  ;; a loop carrying two values on the stack (multi-value block type)
  (func (export "params") (param $n i32) (result i32)
    (i32.const 0) (i32.const 1)
    (loop $l (param i32 i32) (result i32)
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      i32.add
      i32.const 31
      i32.mul
      local.get $n
      i32.xor
      local.get $n
      (br_if $l (i32.gt_s (local.get $n) (i32.const 0)))
      i32.add))
  ;; br_table from inside a loop: continue, leave an inner block, leave all
  (func (export "table") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (block $done
      (loop $l
        (block $skip
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (br_table $l $skip $l (i32.rem_u (local.get $i) (i32.const 3)))
        )
        (local.set $s (i32.add (local.get $s) (local.get $i)))
        (br $l)))
    (i32.add (local.get $s) (local.get $i)))
  ;; recursive (a threaded clone): return from inside a loop
  (func $rec (export "rec") (param $n i32) (result i32) (local $i i32)
    (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.eq (local.get $i) (i32.const 5000))
        (then (return (i32.add (local.get $i) (call $rec (i32.sub (local.get $n) (i32.const 1)))))))
      (br $l))
    (unreachable)))`
	wasm := watText(t, src)
	ins, err := instrument(wasm, 1<<19)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	var mods [2]interface {
		ExportedFunction(string) api.Function
	}
	for i, w := range [][]byte{wasm, ins.wasm} {
		m, err := r.InstantiateWithConfig(ctx, w, wazero.NewModuleConfig().WithName(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		mods[i] = m
		if i == 1 { // a mislabelled branch could loop forever: stop it
			g, err := newGuard(m)
			if err != nil {
				t.Fatal(err)
			}
			rc, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			defer g.arm(rc)()
		}
	}
	for _, name := range []string{"nested", "params", "table", "rec"} {
		for _, n := range []uint64{0, 1, 2, 3, 10, 4095, 4096, 4097, 20000} {
			var got [2][]uint64
			for i, m := range mods {
				if got[i], err = m.ExportedFunction(name).Call(ctx, n); err != nil {
					t.Fatalf("%s(%d) #%d: %v", name, n, i, err)
				}
			}
			if got[0][0] != got[1][0] {
				t.Errorf("%s(%d): instrumented %d, original %d", name, n, got[1][0], got[0][0])
			}
		}
	}
}
