package sandbox_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// pingHost is the Job.Host of TestHostModuleSeesJobHost.
type pingHost struct{ calls atomic.Int64 }

// registerPing registers an atf_v1 with ping(i32) i32 = x+1 that counts its
// calls in the job's *pingHost.
func registerPing(ctx context.Context, r wazero.Runtime) error {
	_, err := r.NewHostModuleBuilder("atf_v1").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
			if h, ok := sandbox.HostFrom(ctx).(*pingHost); ok {
				h.calls.Add(1)
			}
			stack[0] = uint64(uint32(stack[0]) + 1)
		}), []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).
		Export("ping").
		Instantiate(ctx)
	return err
}

func TestHostModuleSeesJobHost(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{HostModules: []sandbox.HostModule{registerPing}})
	wasm := testmodules.WAT(t, "hostcall")
	if _, err := b.engine.Inspect(context.Background(), wasm); err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	host := &pingHost{}
	job := b.newJob(wasm, "")
	job.Host = host
	res := b.run(t, job)
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
		t.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
	}
	if got := host.calls.Load(); got != 1 {
		t.Errorf("host saw %d calls, want 1", got)
	}
}

func TestInspectChecksATFSignatures(t *testing.T) {
	t.Parallel()
	register := func(ctx context.Context, r wazero.Runtime) error {
		_, err := r.NewHostModuleBuilder("atf_v1").
			NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {}), nil, nil).
			Export("ping").
			Instantiate(ctx)
		return err
	}
	b := setup(t, sandbox.Config{HostModules: []sandbox.HostModule{register}})
	_, err := b.engine.Inspect(context.Background(), testmodules.WAT(t, "hostcall"))
	if err == nil || !strings.Contains(err.Error(), "module imports atf_v1.ping, which atf_v1 does not define with that signature") {
		t.Errorf("Inspect: %v", err)
	}
}

func TestInspectKeepsCompiled(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{KeepInspected: true})
	wasm := testmodules.WAT(t, "hello")
	if _, err := b.engine.Inspect(context.Background(), wasm); err != nil {
		t.Fatal(err)
	}
	job := b.newJob(wasm, "")
	job.Load = nil // Run must not need to load and compile it again
	if res := b.run(t, job); res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
		t.Fatalf("outcome %s, error %v", res.Outcome, res.Error)
	}
}
