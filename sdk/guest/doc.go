// Package guest is the Go SDK for writing atf lambdas: WebAssembly modules
// built with GOOS=wasip1 GOARCH=wasm that atf runs in its sandbox.
//
//	func main() {
//		guest.Handle(func(ctx context.Context, payload []byte) ([]byte, error) {
//			guest.Infof("got %d bytes", len(payload))
//			return []byte("done"), nil
//		})
//	}
//
// Handle reads the payload from stdin, writes the result to stdout and
// exits 0; an error exits 1 (FATAL), an error wrapped by [Retry] exits 75
// (the task is retried with backoff). The handler's context is cancelled
// once [Progress] learns that the task was cancelled.
//
// The same program builds as a reactor, which atf instantiates once and
// calls per task (a few µs per task instead of ~7 ms of Go runtime start):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// Then Go does not run main by itself; the package's exported atf_handle
// runs it on the first task, Handle registers the handler and returns, and
// each task calls the handler with the same payload, output and error
// rules (a status instead of an exit code). Keep main to calling Handle.
// State in package variables survives from task to task on one instance
// (tolerate it, do not rely on it). [TaskID], [Attempt] and [TraceParent]
// ask the host for the running task's values (atf_v1.task_env), since a
// reactor's WASI environment is fixed when the instance is created. See
// ABI.md, "Reactors", and reactor.go.
//
// The rest of the package wraps the atf_v1 host functions (ABI.md):
// logging ([Log], [Infof] …), [Progress], tracing spans ([StartSpan]),
// outbound HTTP ([Transport], [Client]) to the lambda's allowed_hosts, a
// key-value store per namespace ([KVGet], [KVSet], [KVDelete]) and follow-up
// tasks ([Schedule]). Failures are *[Error] values that match the sentinel
// errors ([ErrDenied], [ErrNotFound] …) with errors.Is.
//
// Built for another GOOS (to unit-test a handler natively), the host
// functions are stubs: logs go to stderr, Progress never cancels, and
// HTTP, KV and Schedule return [ErrUnavailable].
//
// All pointer work is in abi_wasip1.go, next to the import declarations;
// runtime/hostmod/mem.go is the host side of the same ABI.
package guest
