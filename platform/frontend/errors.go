package frontend

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/runtime/sandbox"
)

// invalidError is bad input: the message says what was wrong and what to do.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// tooLargeError is an upload or payload over its limit.
type tooLargeError struct {
	what  string
	limit int
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than the limit of %s", e.what, humanBytes(e.limit))
}

func humanBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// toConnect turns an error from the store, the sandbox or validation into
// the Connect error a client sees. It is the only place that does.
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	var (
		ce  *connect.Error
		inv *invalidError
		big *tooLargeError
		mod *sandbox.InvalidModuleError
	)
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &inv), errors.As(err, &mod):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.As(err, &big):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, store.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, store.ErrWrongState), errors.Is(err, store.ErrClaimLost):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}
