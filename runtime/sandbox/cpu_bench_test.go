package sandbox

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

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

// BenchmarkInterleavedRatio runs plain and instrumented modules
// alternately, one run each per round, and reports instrumented/plain of
// the fastest runs (min-ratio) and of the medians (median-ratio): on a
// shared, loaded machine the fastest run of each is the steadiest figure,
// and interleaving exposes both to the same load.
//
//	go test -run '^$' -bench InterleavedRatio -benchtime 60x ./runtime/sandbox
func BenchmarkInterleavedRatio(b *testing.B) {
	for _, tc := range []struct {
		name  string
		wasm  func(b *testing.B) []byte
		stdin string
	}{
		{"CallBound", func(b *testing.B) []byte { return watFile(b, "fib") }, ""},
		{"NestedLoopCalls", func(b *testing.B) []byte { return watFile(b, "nestedloops") }, ""},
		{"CPUBound", func(b *testing.B) []byte { return testmodules.C(b, "xorshift") }, "30000000"},
		// Realistic C (clang -O2, wasi-libc): libc qsort of 100,000 ints through a
		// comparator (a call_indirect per comparison); word counting with
		// libc strlen/strcmp and an out-of-line hash loop; a lexer calling
		// small looping helpers per token.
		{"CQsort", func(b *testing.B) []byte { return testmodules.C(b, "qsort") }, "100000"},
		{"CWordCount", func(b *testing.B) []byte { return testmodules.C(b, "wordcount") }, "500000"},
		{"CTokenize", func(b *testing.B) []byte { return testmodules.C(b, "tokenize") }, "40000"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			r := wazero.NewRuntime(ctx)
			defer r.Close(ctx)
			wasi_snapshot_preview1.MustInstantiate(ctx, r)
			wasm := tc.wasm(b)
			ins, err := instrument(wasm, 1<<19)
			if err != nil {
				b.Fatal(err)
			}
			var compiled [2]wazero.CompiledModule
			for i, w := range [][]byte{wasm, ins.wasm} {
				if compiled[i], err = r.CompileModule(ctx, w); err != nil {
					b.Fatal(err)
				}
			}
			var times [2][]time.Duration
			var outs [2]bytes.Buffer
			for b.Loop() {
				for i, c := range compiled {
					var out io.Writer = io.Discard
					if len(times[i]) == 0 {
						out = &outs[i]
					}
					cfg := wazero.NewModuleConfig().WithName("").WithStdin(strings.NewReader(tc.stdin)).WithStdout(out)
					start := time.Now()
					mod, err := r.InstantiateModule(ctx, c, cfg)
					if err != nil {
						b.Fatal(err)
					}
					times[i] = append(times[i], time.Since(start))
					mod.Close(ctx)
				}
			}
			if outs[0].String() != outs[1].String() {
				b.Fatalf("instrumented printed %q, plain %q", outs[1].String(), outs[0].String())
			}
			for i := range times {
				slices.Sort(times[i])
			}
			mid := len(times[0]) / 2
			b.ReportMetric(float64(times[0][0].Microseconds())/1000, "plain-min-ms")
			b.ReportMetric(float64(times[1][0])/float64(times[0][0]), "min-ratio")
			b.ReportMetric(float64(times[1][mid])/float64(times[0][mid]), "median-ratio")
		})
	}
}

// BenchmarkThreadCPU is one reading of the thread's CPU clock: two per
// task.
func BenchmarkThreadCPU(b *testing.B) {
	for b.Loop() {
		if _, ok := threadCPU(); !ok {
			b.Skip("no thread CPU clock")
		}
	}
}
