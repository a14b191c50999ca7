// Package sandbox validates and runs lambda modules: WebAssembly (WASI
// preview 1) commands, in wazero.
//
// # Life of a module
//
// Upload: [Engine.Inspect] compiles the bytes, refuses imports outside
// wasi_snapshot_preview1 and atf_v1 (naming every one), and tells a command
// (exports _start) from a reactor (exports _initialize and atf_handle).
//
// Task: [Engine.Run] finds the module compiled under Job.SHA256, or loads
// (Job.Load) and compiles it once, however many Runs ask at the same time.
// Each Run instantiates the compiled module anonymously with its own stdin,
// stdout, stderr, environment and memory limit, calls _start, and closes
// the instance.
//
//	Run ──► compiled? ──no──► Load ► sha256 check ► instrument ► compile (single flight)
//	         │yes                                        │
//	         ▼                                           ▼
//	      instantiate (memory allocator = limit) ◄───────┘
//	         ▼
//	      __atf_start (was the start section), _start under the run context
//	      (timeout, output limit, caller cancel: they set $stop)
//	         ▼
//	      classify ► Result
//
// # Failures
//
// Run never returns a Go error; every ending is a Result (outcome.go):
//
//	exit 0                        SUCCESS
//	exit 75                       RETRY    ERROR_KIND_EXIT
//	other exit                    FATAL    ERROR_KIND_EXIT         "exit code N: <last stderr line>"
//	Go panic / fatal error        FATAL    ERROR_KIND_TRAP         "exit code 2: panic: …"
//	trap                          FATAL    ERROR_KIND_TRAP         "trap: wasm error: unreachable"
//	call stack over budget        FATAL    ERROR_KIND_TRAP         limit "max_stack_bytes=8388608"
//	timeout                       RETRY    ERROR_KIND_TIMEOUT      limit "timeout=1s"
//	memory grow refused           FATAL    ERROR_KIND_MEMORY_LIMIT limit "memory_mb=16"
//	stdout over MaxOutputBytes    FATAL    ERROR_KIND_OUTPUT_LIMIT limit "max_output_bytes=N"
//	stderr over MaxLogBytes       FATAL    ERROR_KIND_OUTPUT_LIMIT limit "max_log_bytes=N"
//	caller cancelled ctx          CANCELLED
//	Load or sha256 failed         FATAL    ERROR_KIND_INTERNAL
//	bad module / not a command    FATAL    ERROR_KIND_MODULE
//
// # Host modules (atf_v1)
//
// The sandbox core does not define atf_v1; a host-module package does,
// through two hooks (host.go):
//
//   - Config.HostModules: functions New calls once with the Engine's
//     wazero.Runtime, after wasi_snapshot_preview1, to register atf_v1
//     (r.NewHostModuleBuilder("atf_v1")…Instantiate(ctx)). Once registered,
//     Inspect checks every atf_v1 import against its exports (name and
//     signature) as it does for WASI, and refuses a mismatch at deploy.
//   - Job.Host: any per-task value (the task's log sink, HTTP policy, KV
//     namespace …), set by the executor. A host function gets it back with
//     HostFrom(ctx), and the task's environment with TaskEnv(ctx); ctx is
//     the run context, done on timeout, output limit or cancellation, and a
//     blocking host function must return when it is.
//
// # Reactor ABI (v1)
//
// A reactor exports "memory", "_initialize" (no params, no results; wasi-libc
// and Go -buildmode=c-shared produce it) and
//
//	atf_handle(payload_len i32) -> (status i32)
//
// and no _start. For each task the sandbox calls atf_handle once; during
// the call the module's stdin (fd 0) yields exactly the task's payload,
// payload_len bytes, then EOF; what it writes to stdout (fd 1) during the
// call is the task's output (capped like a command's) and stderr (fd 2) is
// its log. Status 0 is SUCCESS, 75 asks for a retry, any other value is
// FATAL ("status N: <last stderr line>"), exactly like a command's exit
// code; proc_exit(n) inside the handler ends the call with code n and the
// instance. So a guest reads its payload and writes its result with plain
// WASI I/O (io.ReadAll(os.Stdin) in Go, read(0, …) in C), command or
// reactor alike; atf_v1 is needed only for what WASI lacks.
//
// The instance's WASI environment holds only ATF_LAMBDA (it is fixed at
// instantiation); per-task ATF_TASK_ID, ATF_ATTEMPT and TRACEPARENT reach
// host functions through TaskEnv(ctx), for atf_v1 to hand to the guest.
// Instances are pooled per (module sha256, memory_mb), _initialize runs
// once per instance, and an instance is reused for later tasks until a task
// ends in anything but SUCCESS (error, trap, timeout, cancel, memory limit,
// output limit, status != 0) or after Config.ReactorMaxUses tasks; then it
// is closed. A guest must therefore not rely on state surviving between
// calls, only tolerate it.
//
// The files follow the concerns: engine.go (runtime, lifecycle),
// compile.go (compiled-module cache), inspect.go, run.go, instrument.go
// (the binary rewrite that makes a module stoppable and bounds its stack),
// timeout.go (how a running module is stopped), host.go (atf_v1 hooks),
// limits.go (memory limit), writer.go (bounded stdout and stderr),
// outcome.go (classification). Choices and measurements
// are in runtime/RATIONALE.md.
package sandbox
