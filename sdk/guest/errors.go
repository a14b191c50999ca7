package guest

import "fmt"

// Codes of the atf_v1 functions (ABI.md); runtime/hostmod defines the same.
const (
	codeOK          = 0
	codeDenied      = -1
	codeNotFound    = -2
	codeTooLarge    = -3
	codeInvalid     = -4
	codeUnavailable = -5
	codeTimeout     = -6
	codeLimit       = -7
)

// Error is an atf_v1 call that failed.
type Error struct {
	Op   string // the host function, e.g. "kv_get"
	Code int32
}

func (e *Error) Error() string { return fmt.Sprintf("atf_v1.%s: %s", e.Op, codeText(e.Code)) }

// Is makes errors.Is(err, ErrNotFound) and the like work.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Op == "" && t.Code == e.Code
}

// Sentinel errors, one per code: compare with errors.Is.
var (
	ErrDenied      = &Error{Code: codeDenied}
	ErrNotFound    = &Error{Code: codeNotFound}
	ErrTooLarge    = &Error{Code: codeTooLarge}
	ErrInvalid     = &Error{Code: codeInvalid}
	ErrUnavailable = &Error{Code: codeUnavailable}
	ErrTimeout     = &Error{Code: codeTimeout}
	ErrLimit       = &Error{Code: codeLimit}
)

func codeText(c int32) string {
	switch c {
	case codeDenied:
		return "denied (host not in the lambda's allowed_hosts)"
	case codeNotFound:
		return "not found"
	case codeTooLarge:
		return "too large"
	case codeInvalid:
		return "invalid argument"
	case codeUnavailable:
		return "unavailable"
	case codeTimeout:
		return "timeout"
	case codeLimit:
		return "limit reached"
	}
	return fmt.Sprintf("code %d", c)
}

func check(op string, c int32) error {
	if c >= 0 {
		return nil
	}
	return &Error{Op: op, Code: c}
}
