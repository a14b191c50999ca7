package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Handler handles one task: payload in, output out.
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

// Exit codes of the Wasm contract.
const (
	exitFatal = 1
	exitRetry = 75 // EX_TEMPFAIL
)

// Handle runs h for the task.
//
// In a command (the default model, built with GOOS=wasip1 GOARCH=wasm) it
// reads the payload from stdin, calls h, writes its output to stdout and
// exits: 0 on success, 75 when the error is a [Retry], 1 on any other error
// (the error is written to stderr, where atf keeps its last line as the
// task's error). It does not return.
//
// In a reactor (built with -buildmode=c-shared as well; reactor.go) it
// registers h and returns: main should then return too. atf calls h once
// per task, on an instance it reuses, with the same payload, output and
// status rules.
func Handle(h Handler) {
	if inReactor {
		reactorHandler = h
		return
	}
	os.Exit(run(h, os.Stdin, os.Stdout, os.Stderr))
}

func run(h Handler, stdin io.Reader, stdout, stderr io.Writer) int {
	payload, err := io.ReadAll(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "read payload: %v\n", err)
		return exitRetry
	}
	out, err := call(h, payload)
	if err != nil {
		fmt.Fprintln(stderr, strings.ReplaceAll(err.Error(), "\n", " "))
		if IsRetry(err) {
			return exitRetry
		}
		return exitFatal
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "write output: %v\n", err)
		return exitFatal
	}
	return 0
}

// call runs h with a fresh task context; a panic is a fatal error.
func call(h Handler, payload []byte) (out []byte, err error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	setCancelTask(cancel)
	defer func() {
		setCancelTask(nil)
		cancel(nil)
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return h(ctx, payload)
}

var (
	cancelMu   sync.Mutex
	cancelTask context.CancelCauseFunc // the running handler's, nil between tasks
)

func setCancelTask(cancel context.CancelCauseFunc) {
	cancelMu.Lock()
	cancelTask = cancel
	cancelMu.Unlock()
}

// cancelRunning cancels the running handler's context with ErrCancelled.
func cancelRunning() {
	cancelMu.Lock()
	cancel := cancelTask
	cancelMu.Unlock()
	if cancel != nil {
		cancel(ErrCancelled)
	}
}

// ErrCancelled is the cause of the handler's context when the task was
// cancelled.
var ErrCancelled = errors.New("atf: task cancelled")

// retryError marks an error as retriable.
type retryError struct{ err error }

func (r retryError) Error() string { return r.err.Error() }
func (r retryError) Unwrap() error { return r.err }

// Retry marks err as temporary: Handle exits 75 and atf retries the task
// with backoff, up to the lambda's max_attempts. Retry(nil) is nil.
func Retry(err error) error {
	if err == nil {
		return nil
	}
	return retryError{err}
}

// IsRetry reports whether err was marked by Retry.
func IsRetry(err error) bool {
	var r retryError
	return errors.As(err, &r)
}

// TaskID is the running task's id (ATF_TASK_ID).
//
// In a command it is read from the WASI environment. A reactor instance
// serves many tasks while its WASI environment, fixed at instantiation,
// holds only ATF_LAMBDA: there TaskID, Attempt and TraceParent ask the
// host (atf_v1.task_env) for the task being handled, so call them from
// the handler (or code it waits for), not after it returned.
func TaskID() string { return taskEnv("ATF_TASK_ID") }

// Attempt is the running task's attempt (ATF_ATTEMPT): 1 for the first
// execution, one more for each retry. 0 when unknown.
func Attempt() int {
	n, err := strconv.Atoi(taskEnv("ATF_ATTEMPT"))
	if err != nil {
		return 0
	}
	return n
}

// TraceParent is the W3C traceparent of the running task's execution
// (TRACEPARENT), for propagating its trace to a service the handler calls
// by hand; "" when the task is not traced.
func TraceParent() string { return taskEnv("TRACEPARENT") }

// Lambda is the running lambda's name (ATF_LAMBDA), in the WASI
// environment of commands and reactors alike.
func Lambda() string { return os.Getenv("ATF_LAMBDA") }

// taskEnv is the running task's environment variable name: in a reactor
// from the host, per task; in a command from the WASI environment, which
// holds the same values.
func taskEnv(name string) string {
	if inReactor {
		v, _ := hostTaskEnv(name)
		return v
	}
	return os.Getenv(name)
}
