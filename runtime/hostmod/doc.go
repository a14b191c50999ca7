// Package hostmod is atf_v1, the host functions a lambda imports: log,
// progress (which answers "cancel requested"), tracing spans, outbound
// HTTP to the lambda's allowed hosts, a per-namespace key-value store,
// scheduling follow-up tasks and the task's environment (task_env: a
// reactor instance serves many tasks, but its WASI environment is fixed at
// instantiation). sdk/guest/ABI.md is the contract, precise
// enough to write a guest in any language; sdk/guest (Go) and
// sdk/guest/c/atf.h (C) are guests.
//
// # Wiring
//
// [Instantiate] registers the module on a wazero runtime (the sandbox
// Engine's, through sandbox.Config.HostModules). Per task, the executor
// builds a [Task] — the lambda's allowed hosts, the [Services] that reach
// the server's HostService, the progress and log sinks — and passes it as
// sandbox.Job.Host (or, outside the sandbox, with [WithTask]). Host
// functions find it in the context of each call; that context is the run
// context, so a call blocked on the network returns when the task times out
// or is cancelled. Spans and log events are attached to the span in that
// context: the executor's atf.execute span.
//
// # Faults and codes
//
// A pointer or length outside the guest's memory is the guest's bug: the
// call traps with a [Fault] ("atf_v1.log: message at [65530, 65530+100) is
// outside the module's memory (65536 bytes)") and the task fails FATAL. All
// reading and writing of guest memory is in mem.go. Everything else a guest
// can get wrong — a bad level, a host not allowed, a value too large, a
// service down — is a negative [Code] it can handle.
//
// The files follow the functions: task.go (log, progress, spans,
// result_read, task_env), http.go, kv.go (kv_*, schedule), hostmod.go (the module,
// Task, Services, codes, limits).
package hostmod
