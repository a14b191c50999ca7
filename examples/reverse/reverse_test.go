package main

import (
	"context"
	"strings"
	"testing"

	"github.com/atfhq/atf/examples/internal/golden"

	"github.com/atfhq/atf/examples/internal/wasmrun"
	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/runtime/hostmod"
	"github.com/atfhq/atf/runtime/sandbox"
)

func TestReverse(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "ascii", in: "abc", want: "cba"},
		{name: "empty", in: "", want: ""},
		{name: "lines keep their order", in: "ab\ncd\n", want: "ba\ndc\n"},
		{name: "crlf stays at the end", in: "ab\r\ncd", want: "ba\r\ndc"},
		{name: "runes, not bytes", in: "né🙃", want: "🙃én"},
		{name: "blank lines", in: "\n\n", want: "\n\n"},
		{name: "invalid utf-8", in: "a\xffb", wantErr: "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reverse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("reverse(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("reverse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestWasm builds the lambda as a reactor and runs it in atf's sandbox, as
// an executor would: several tasks on one reused instance.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 binary; skipped with -short")
	}
	wasm := wasmrun.BuildReactor(t, ".")
	ctx := context.Background()
	e, err := sandbox.New(ctx, sandbox.Config{HostModules: []sandbox.HostModule{hostmod.Register}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	info, err := e.Inspect(ctx, wasm)
	if err != nil || info.ABI != atfv1.Abi_ABI_REACTOR {
		t.Fatalf("Inspect: %+v, %v; want a reactor", info, err)
	}
	run := func(payload []byte) sandbox.Result {
		return e.Run(ctx, sandbox.Job{
			SHA256:   info.SHA256,
			Load:     func(context.Context) ([]byte, error) { return wasm, nil },
			Payload:  payload,
			Env:      wasmrun.Env,
			Timeout:  wasmrun.Timeout,
			MemoryMB: 64,
		})
	}

	in := golden.Read(t, "testdata/lines.txt")
	for range 3 {
		res := run(in)
		if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
		}
		golden.Check(t, "testdata/lines.golden", res.Output)
	}
	if idle := e.CacheStats().IdleInstances; idle != 1 {
		t.Errorf("idle instances = %d, want 1: the three tasks share one", idle)
	}

	res := run([]byte("a\xffb"))
	if res.Outcome != atfv1.Outcome_OUTCOME_FATAL || res.Error.GetMessage() != "status 1: payload is not valid UTF-8 text" {
		t.Errorf("invalid payload: outcome %s, error %v", res.Outcome, res.Error)
	}
}
