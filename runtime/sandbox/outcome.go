package sandbox

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/sys"
	"google.golang.org/protobuf/proto"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// exitRetry is EX_TEMPFAIL: the module asks to be retried.
const exitRetry = 75

// runState is everything known when a module instance has stopped.
type runState struct {
	err      error // from instantiation or _start; nil on a normal return
	cause    error // why the run context is done, nil if it is not
	timeout  time.Duration
	memoryMB int
	maxOut   int
	maxLog   int
	maxStack int
	stackHit bool // the call-stack budget ran out
	// status: err is a reactor's non-zero atf_handle status as an
	// ExitError, named "status N" rather than "exit code N".
	status bool
	mem    *memoryLimit
	stdout *outputWriter
	stderr *tailWriter
	cpu    time.Duration // CPU time of the guest's calls (callGuest)
}

// classify turns how a run ended into a Result. The order matters:
//
//  1. stdout over the limit        → FATAL OUTPUT_LIMIT (even if it then exited 0)
//     stderr over the limit        → FATAL OUTPUT_LIMIT (max_log_bytes)
//  2. exit 0 / return from _start  → SUCCESS
//  3. timeout                      → RETRY TIMEOUT
//  4. caller cancelled             → CANCELLED
//  5. memory grow refused          → FATAL MEMORY_LIMIT (whatever the module did next:
//     Go prints "fatal error: out of memory" and exits 2, C gets NULL from malloc)
//  6. exit 75                      → RETRY EXIT
//  7. exit 2 after a Go crash line → FATAL TRAP ("panic: …", "fatal error: …")
//  8. other exit                   → FATAL EXIT
//  9. any other error              → FATAL TRAP (unreachable, out of bounds, stack overflow …)
func classify(s runState) Result {
	tail := validUTF8(s.stderr.Tail())
	r := Result{Output: s.stdout.Bytes(), OutputTruncated: s.stdout.exceeded, Stderr: tail, MemoryPeakBytes: s.mem.Peak(), CPUTime: s.cpu}
	fail := func(outcome atfv1.Outcome, kind atfv1.ErrorKind, msg string) Result {
		r.Outcome = outcome
		r.Error = &atfv1.TaskError{Kind: kind, Message: validUTF8(oneLine(msg)), StderrTail: tail}
		return r
	}

	code, isExit := exitCode(s.err)

	switch {
	case s.stdout.exceeded:
		r = fail(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
			fmt.Sprintf("output limit hit: the module wrote more than %d bytes to stdout (max_output_bytes=%d)", s.maxOut, s.maxOut))
		r.Error.Limit = fmt.Sprintf("max_output_bytes=%d", s.maxOut)
		return r

	case s.stderr.exceeded:
		r = fail(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
			fmt.Sprintf("log limit hit: the module wrote more than %d bytes to stderr (max_log_bytes=%d)", s.maxLog, s.maxLog))
		r.Error.Limit = fmt.Sprintf("max_log_bytes=%d", s.maxLog)
		return r

	case s.err == nil || (isExit && code == 0):
		r.Outcome = atfv1.Outcome_OUTCOME_SUCCESS
		return r

	// The host never closes a running module (it sets $stop and the module
	// traps: timeout.go), so every exit code is the guest's own, even
	// wazero's reserved sys.ExitCodeContextCanceled/DeadlineExceeded.
	case errors.Is(s.cause, errTimeout) && !isExit:
		r = fail(atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
			fmt.Sprintf("timeout: the module ran longer than %s (timeout=%s)", s.timeout, s.timeout))
		r.Error.Limit = "timeout=" + s.timeout.String()
		return r

	case s.cause != nil && !isExit:
		r = fail(atfv1.Outcome_OUTCOME_CANCELLED, atfv1.ErrorKind_ERROR_KIND_UNSPECIFIED,
			"cancelled: "+s.cause.Error())
		return r

	case s.mem.Hit():
		r = fail(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_MEMORY_LIMIT,
			memoryMessage(s))
		r.Error.Limit = fmt.Sprintf("memory_mb=%d", s.memoryMB)
		if isExit {
			r.Error.ExitCode = proto.Int32(int32(code))
		}
		return r

	case isExit:
		msg := fmt.Sprintf("exit code %d", code)
		if s.status {
			msg = statusMessage(code)
		}
		kind := atfv1.ErrorKind_ERROR_KIND_EXIT
		outcome := atfv1.Outcome_OUTCOME_FATAL
		if crash := s.stderr.CrashLine(); code == 2 && crash != "" {
			kind, msg = atfv1.ErrorKind_ERROR_KIND_TRAP, msg+": "+crash
		} else if line := lastLine(tail); line != "" {
			msg += ": " + line
		}
		if code == exitRetry {
			outcome = atfv1.Outcome_OUTCOME_RETRY
		}
		r = fail(outcome, kind, msg)
		r.Error.ExitCode = proto.Int32(int32(code))
		return r

	case s.stackHit && !isExit:
		r = fail(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_TRAP,
			fmt.Sprintf("stack limit hit: the module's call stack went over max_stack_bytes=%d (runaway recursion?)", s.maxStack))
		r.Error.Limit = fmt.Sprintf("max_stack_bytes=%d", s.maxStack)
		return r

	default:
		return fail(atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_TRAP,
			"trap: "+trapMessage(s.err))
	}
}

// exitCode is err's exit code, if it is a *sys.ExitError.
func exitCode(err error) (code uint32, ok bool) {
	if err == nil { // no errors.As: its target would be allocated
		return 0, false
	}
	var exit *sys.ExitError
	if !errors.As(err, &exit) {
		return 0, false
	}
	return exit.ExitCode(), true
}

func memoryMessage(s runState) string {
	msg := fmt.Sprintf("memory limit hit: memory_mb=%d", s.memoryMB)
	if req := s.mem.requested.Load(); req > 0 {
		msg += fmt.Sprintf(" (the module asked for %d MiB of linear memory)", (req+mib-1)/mib)
	}
	return msg
}

// trapMessage is the first line of a wazero runtime error, e.g.
// "wasm error: unreachable"; the stack trace that follows is dropped.
func trapMessage(err error) string {
	return oneLine(err.Error())
}

// failure is a Result for a failure outside the module's own run.
func failure(outcome atfv1.Outcome, kind atfv1.ErrorKind, msg string) Result {
	return Result{Outcome: outcome, Error: &atfv1.TaskError{Kind: kind, Message: validUTF8(oneLine(msg))}}
}

func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// abandonedResult is the Result of a run given up on while the module was
// blocked in a host function past the run context's end (timeout.go). The
// module's streams and memory are still in use, so none of it is read.
func abandonedResult(s runState, cause error) Result {
	const why = " (the module was blocked in a host function and did not stop; it was abandoned)"
	if errors.Is(cause, errTimeout) {
		r := failure(atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
			fmt.Sprintf("timeout: the module ran longer than %s (timeout=%s)", s.timeout, s.timeout)+why)
		r.Error.Limit = "timeout=" + s.timeout.String()
		return r
	}
	return failure(atfv1.Outcome_OUTCOME_CANCELLED, atfv1.ErrorKind_ERROR_KIND_UNSPECIFIED,
		"cancelled: "+cause.Error()+why)
}
