// Package sandbox validates and runs lambda modules: WebAssembly (WASI
// preview 1) commands, in wazero.
//
// # Life of a module
//
// Upload: [Engine.Inspect] compiles the bytes, refuses imports outside
// wasi_snapshot_preview1 and atf_v1 (naming every one), and tells a command
// (exports _start) from a reactor (exports _initialize and a handler). It
// keeps nothing.
//
// Task: [Engine.Run] finds the module compiled under Job.SHA256, or loads
// (Job.Load) and compiles it once, however many Runs ask at the same time.
// Each Run instantiates the compiled module anonymously with its own stdin,
// stdout, stderr, environment and memory limit, calls _start, and closes
// the instance.
//
//	Run ──► compiled? ──no──► Load ► sha256 check ► compile (single flight)
//	         │yes                                        │
//	         ▼                                           ▼
//	      instantiate (memory allocator = limit) ◄───────┘
//	         ▼
//	      _start under the run context (timeout, output limit, caller cancel)
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
//	timeout                       RETRY    ERROR_KIND_TIMEOUT      limit "timeout=1s"
//	memory grow refused           FATAL    ERROR_KIND_MEMORY_LIMIT limit "memory_mb=16"
//	stdout over MaxOutputBytes    FATAL    ERROR_KIND_OUTPUT_LIMIT limit "max_output_bytes=N"
//	caller cancelled ctx          CANCELLED
//	Load or sha256 failed         FATAL    ERROR_KIND_INTERNAL
//	bad module / not a command    FATAL    ERROR_KIND_MODULE
//
// The files follow the concerns: engine.go (runtime, lifecycle),
// compile.go (compiled-module cache), inspect.go, run.go, timeout.go (how a
// running module is stopped), limits.go (memory limit), writer.go (bounded
// stdout and stderr), outcome.go (classification). Choices and measurements
// are in runtime/RATIONALE.md.
package sandbox
