// Package sandbox validates and runs lambda modules: WebAssembly (WASI
// preview 1) commands and reactors, in wazero.
//
// # Life of a module
//
// Upload: [Engine.Inspect] compiles the bytes, refuses imports outside
// wasi_snapshot_preview1 and atf_v1 (naming every one), and tells a command
// (exports _start) from a reactor (exports _initialize and atf_handle).
//
// Task: [Engine.Run] finds the module compiled under Job.SHA256, or loads
// (Job.Load) and compiles it once, however many Runs ask at the same time;
// compiled modules stay in an LRU bounded by Config.CompiledCacheBytes
// (compile.go). For a command, each Run instantiates the compiled module
// anonymously with its own stdin, stdout, stderr, environment and memory
// limit, calls _start, and closes the instance. For a reactor, a Run takes
// an instance from a pool, or instantiates one and runs _initialize, and
// calls atf_handle (see "Reactor ABI (v1)" below, and reactor.go).
//
//	Run ──► compiled? ──no──► Load ► sha256 check ► instrument ► compile (single flight)
//	         │yes                                        │
//	         ▼                                           ▼
//	      instantiate (memory allocator = limit) ◄───────┘
//	         ▼
//	      __atf_start (was the start section), _start under the run context
//	      (timeout, output limit, caller cancel: they set $stop)
//	      [reactor: pooled instance, or instantiate + _initialize; atf_handle]
//	         ▼
//	      classify ► Result
//
// # Failures
//
// Run never returns a Go error; every ending is a Result (outcome.go):
//
//	exit 0 / status 0             SUCCESS
//	exit 75 / status 75           RETRY    ERROR_KIND_EXIT
//	other exit                    FATAL    ERROR_KIND_EXIT         "exit code N: <last stderr line>"
//	other reactor status          FATAL    ERROR_KIND_EXIT         "status N: <last stderr line>"
//	Go panic / fatal error        FATAL    ERROR_KIND_TRAP         "exit code 2: panic: …"
//	trap                          FATAL    ERROR_KIND_TRAP         "trap: wasm error: unreachable"
//	call stack over budget        FATAL    ERROR_KIND_TRAP         limit "max_stack_bytes=8388608"
//	timeout                       RETRY    ERROR_KIND_TIMEOUT      limit "timeout=1s"
//	memory grow refused           FATAL    ERROR_KIND_MEMORY_LIMIT limit "memory_mb=16"
//	stdout over MaxOutputBytes    FATAL    ERROR_KIND_OUTPUT_LIMIT limit "max_output_bytes=N"
//	stderr over MaxLogBytes       FATAL    ERROR_KIND_OUTPUT_LIMIT limit "max_log_bytes=N"
//	caller cancelled ctx          CANCELLED
//	Load or sha256 failed         FATAL    ERROR_KIND_INTERNAL
//	bad module / neither command
//	nor reactor                   FATAL    ERROR_KIND_MODULE
//
// A failure inside a reactor's _initialize is classified the same way, its
// message prefixed "_initialize: ".
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
// host functions through TaskEnv(ctx), which atf_v1.task_env hands to the
// guest.
// Instances are pooled per (module sha256, memory_mb), _initialize runs
// once per instance, and an instance is reused for later tasks until a task
// ends in anything but SUCCESS (error, trap, timeout, cancel, memory limit,
// output limit, status != 0, proc_exit) or after Config.ReactorMaxUses
// tasks (default 1000); then it is closed. A guest must therefore not rely
// on state surviving between calls, only tolerate it. _initialize runs
// under the first task's run context: its time counts against that task's
// timeout and what it writes goes to that task's stdout and stderr. The
// pool keeps at most Config.ReactorIdlePerModule idle instances per key
// (default 8) and Config.ReactorIdleTotal in all (default 32); instances in
// use are bounded by the Runs in flight. An instance idle for longer than
// Config.ReactorIdleTimeout (default 1 minute) is closed, and evicting a
// module from the compiled-module cache closes its idle instances.
//
// Builds: Go, GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared with the
// guest SDK (sdk/guest exports atf_handle and runs main once to learn the
// handler); C, clang --target=wasm32-wasi -mexec-model=reactor with an
// exported atf_handle that reads fd 0 with read(2) (stdio's FILE would
// keep the first task's EOF).
//
// The files follow the concerns: engine.go (runtime, lifecycle),
// compile.go (compiled-module cache, LRU), inspect.go, run.go (commands),
// reactor.go (reactors), pool.go (idle reactor instances), instrument.go
// (the binary rewrite that makes a module stoppable and bounds its stack),
// timeout.go (how a running module is stopped), host.go (atf_v1 hooks),
// limits.go (memory limit), writer.go (bounded stdout and stderr),
// outcome.go (classification). Choices and measurements
// are in runtime/RATIONALE.md.
package sandbox
