package sandbox

import "context"

// Hooks for host modules (atf_v1, in another package).
//
// Registration: Config.HostModules run once in New, on the Engine's one
// wazero.Runtime; every module compiled later links against them.
//
// Per task: Job.Host is put in the context the module is instantiated and
// called with, which is the context wazero passes to host functions
// (api.GoModuleFunc / GoFunction ctx argument). A host function gets it back
// with HostFrom(ctx) and type-asserts it to its own type. That context is
// also the run context: it is done when the task's timeout passes, its
// stdout limit is hit or the caller cancels (claim lost, task cancelled). A
// host function that blocks (HTTP, KV, sleep) must return promptly once
// ctx.Done() is closed; the module is then stopped at its next loop head or
// function entry (timeout.go). A bad pointer or length from the guest should
// panic with an error (or call mod.CloseWithExitCode): wazero turns a host
// panic into a trap the sandbox classifies as FATAL ERROR_KIND_TRAP.

type (
	hostKey struct{}
	envKey  struct{}
)

// HostFrom returns the Job.Host of the task whose module called the host
// function running with ctx, or nil.
func HostFrom(ctx context.Context) any {
	return ctx.Value(hostKey{})
}

// TaskEnv returns the environment (Job.Env, or Job.Vars') of the task
// whose module called the host function running with ctx (ATF_TASK_ID,
// ATF_ATTEMPT, TRACEPARENT …), or nil. A reactor instance serves many tasks but its WASI environment is
// fixed at instantiation, so atf_v1 offers the per-task values from here.
// The map must not be modified.
func TaskEnv(ctx context.Context) map[string]string {
	env, _ := ctx.Value(envKey{}).(map[string]string)
	return env
}
