package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
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

// Handle runs h as a WASI command (the default model): it reads the
// payload from stdin, calls h, writes its output to stdout and exits: 0 on
// success, 75 when the error is a [Retry], 1 on any other error (the error
// is written to stderr, where atf keeps its last line as the task's
// error). It does not return.
func Handle(h Handler) {
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

// call runs h with the task context; a panic is a fatal error.
func call(h Handler, payload []byte) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return h(taskContext(), payload)
}

var (
	ctxOnce   sync.Once
	ctx       context.Context
	cancelCtx context.CancelCauseFunc
)

// ErrCancelled is the cause of the handler's context when the task was
// cancelled.
var ErrCancelled = errors.New("atf: task cancelled")

func taskContext() context.Context {
	ctxOnce.Do(func() { ctx, cancelCtx = context.WithCancelCause(context.Background()) })
	return ctx
}

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

// TaskID is the running task's id (ATF_TASK_ID), Lambda its lambda
// (ATF_LAMBDA).
func TaskID() string { return os.Getenv("ATF_TASK_ID") }

// Lambda is the running lambda's name.
func Lambda() string { return os.Getenv("ATF_LAMBDA") }
