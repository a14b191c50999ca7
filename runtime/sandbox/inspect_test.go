package sandbox_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"testing"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

func TestInspectAccepts(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	ctx := context.Background()

	echo := testmodules.Build(t, "echo")
	info, err := b.engine.Inspect(ctx, echo)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sum(echo) || info.ABI != atfv1.Abi_ABI_COMMAND {
		t.Errorf("info = %+v", info)
	}
	if !slices.Contains(info.Imports, "wasi_snapshot_preview1.fd_write") || !slices.IsSorted(info.Imports) ||
		len(slices.Compact(slices.Clone(info.Imports))) != len(info.Imports) {
		t.Errorf("imports = %v, want sorted, unique, with fd_write", info.Imports)
	}

	hello := testmodules.WAT(t, "hello")
	info, err = b.engine.Inspect(ctx, hello)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"wasi_snapshot_preview1.fd_write", "wasi_snapshot_preview1.proc_exit"}
	if info.ABI != atfv1.Abi_ABI_COMMAND || !slices.Equal(info.Imports, want) {
		t.Errorf("info = %+v, want COMMAND with %v", info, want)
	}

	info, err = b.engine.Inspect(ctx, testmodules.WAT(t, "reactor"))
	if err != nil || info.ABI != atfv1.Abi_ABI_REACTOR {
		t.Errorf("reactor: info %+v, err %v", info, err)
	}
}

func TestInspectRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	random := make([]byte, 4096)
	rand.Read(random)
	magicThenJunk := append([]byte("\x00asm\x01\x00\x00\x00"), random[:64]...)

	for _, tc := range []struct {
		name   string
		wasm   func(t *testing.T) []byte
		reason string
	}{
		{"random bytes", func(*testing.T) []byte { return random },
			`not a WebAssembly module: the upload does not start with the \0asm magic number; upload the .wasm file your compiler produced`},
		{"empty", func(*testing.T) []byte { return nil },
			`not a WebAssembly module: the upload does not start with the \0asm magic number; upload the .wasm file your compiler produced`},
		{"bad import", func(t *testing.T) []byte { return testmodules.WAT(t, "badimport") },
			"module imports env.foo, which atf does not offer: a lambda may import only from wasi_snapshot_preview1 and atf_v1"},
		{"many bad imports", func(t *testing.T) []byte { return testmodules.WAT(t, "manyimports") },
			"module imports env.bar and env.foo, which atf does not offer: a lambda may import only from wasi_snapshot_preview1 and atf_v1; " +
				"module imports wasi_snapshot_preview1.no_such_call, which WASI preview 1 does not define with that signature: build for wasip1 (GOOS=wasip1, or clang --target=wasm32-wasi)"},
		{"no _start", func(t *testing.T) []byte { return testmodules.WAT(t, "nostart") },
			"module exports neither _start (a WASI command) nor _initialize and atf_handle (a reactor): build with GOOS=wasip1 (add -buildmode=c-shared for a reactor), or clang --target=wasm32-wasi"},
		{"reactor without atf_handle", func(t *testing.T) []byte { return testmodules.WAT(t, "badreactor") },
			"module exports _initialize but not atf_handle: a reactor must export atf_handle(payload_len i32) -> i32 (sdk/guest/ABI.md); or build a command (no -buildmode=c-shared, or clang without -mexec-model=reactor)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.engine.Inspect(context.Background(), tc.wasm(t))
			var invalid *sandbox.InvalidModuleError
			if !errors.As(err, &invalid) {
				t.Fatalf("err = %v (%T), want *InvalidModuleError", err, err)
			}
			if invalid.Reason != tc.reason || err.Error() != tc.reason {
				t.Errorf("reason = %q\nwant     %q", invalid.Reason, tc.reason)
			}
		})
	}

	t.Run("magic then junk", func(t *testing.T) {
		_, err := b.engine.Inspect(context.Background(), magicThenJunk)
		var invalid *sandbox.InvalidModuleError
		if !errors.As(err, &invalid) || len(invalid.Reason) < len("not a valid WebAssembly module: ") ||
			invalid.Reason[:len("not a valid WebAssembly module: ")] != "not a valid WebAssembly module: " {
			t.Fatalf("err = %v", err)
		}
	})
}
