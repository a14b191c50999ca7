package sandbox

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/atfhq/atf/internal/testmodules"
)

// xorshiftWant is what xorshift.c prints after 30M rounds.
const xorshiftWant = "2535504059865855682\n"

// BenchmarkCPUBound runs the C xorshift loop (30M rounds: ~50 ms in plain
// wazero) in three runtimes: plain wazero (no way to stop the module),
// wazero WithCloseOnContextDone, and atf's instrumented module. The ratio
// instrumented/plain is the time limit's cost (target: <= 1.2).
func BenchmarkCPUBound(b *testing.B) {
	wasm := testmodules.C(b, "xorshift")
	ins, err := instrument(wasm, 1<<19)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		wasm  []byte
		close bool
	}{
		{"plain", wasm, false},
		{"closeOnContextDone", wasm, true},
		{"instrumented", ins.wasm, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(tc.close))
			defer r.Close(ctx)
			wasi_snapshot_preview1.MustInstantiate(ctx, r)
			compiled, err := r.CompileModule(ctx, tc.wasm)
			if err != nil {
				b.Fatal(err)
			}
			want := ""
			b.ResetTimer()
			for b.Loop() {
				var out bytes.Buffer
				cfg := wazero.NewModuleConfig().WithName("").WithStdin(bytes.NewReader([]byte("30000000"))).WithStdout(&out)
				mod, err := r.InstantiateModule(ctx, compiled, cfg)
				if err != nil {
					b.Fatal(err)
				}
				mod.Close(ctx)
				if want == "" {
					want = out.String()
				}
				if out.String() != want || want != xorshiftWant {
					b.Fatalf("output %q, want %q", out.String(), xorshiftWant)
				}
			}
		})
	}
}

// BenchmarkCallBound is BenchmarkCPUBound for call-heavy code: naive
// recursive fib(30) in WAT (1.6M calls), where every call pays the fuel
// and stack-budget bookkeeping.
func BenchmarkCallBound(b *testing.B) {
	wasm := watFile(b, "fib")
	ins, err := instrument(wasm, 1<<19)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		wasm  []byte
		close bool
	}{
		{"plain", wasm, false},
		{"closeOnContextDone", wasm, true},
		{"instrumented", ins.wasm, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(tc.close))
			defer r.Close(ctx)
			compiled, err := r.CompileModule(ctx, tc.wasm)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
				if err != nil {
					b.Fatal(err)
				}
				mod.Close(ctx)
			}
		})
	}
}
