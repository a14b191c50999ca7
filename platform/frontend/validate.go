package frontend

import (
	"time"

	"github.com/atfhq/atf/platform/store"
)

// Bounds of a lambda's settings.
const (
	maxTimeout     = time.Hour
	maxMemoryMB    = 4096
	maxAttempts    = 100
	maxKeyBytes    = 256
	maxPriority    = 9
	maxConcurrency = 100000
	// max_output_bytes: the output is stored with the task and sent in
	// SetResult, so it stays far below a Redis value's and a request's cap.
	maxOutputBytes = 16 << 20
	// max_log_bytes: only stderr's end is stored; this bounds time spent
	// writing it.
	maxLogBytes = 1 << 30
)

func validateName(what, name string) error {
	if name == "" {
		return invalidf("%s is missing", what)
	}
	if !validName(name) {
		return invalidf("%s %q is not valid: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// validName reports whether name matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$
// (a regexp cost a task's scheduling more than its other checks together).
func validName(name string) bool {
	if len(name) == 0 || len(name) > 128 || name[0] == '.' || name[0] == '_' || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func validateLambdaSettings(timeout time.Duration, memoryMB, attempts, concurrency, outputBytes, logBytes int, backoff, backoffMax time.Duration) error {
	switch {
	case timeout < 0 || timeout > maxTimeout:
		return invalidf("timeout %s is out of range: use a duration between 1ms and %s, e.g. 30s", timeout, maxTimeout)
	case timeout > 0 && timeout < time.Millisecond:
		return invalidf("timeout %s is too short: use at least 1ms", timeout)
	case memoryMB < 0 || memoryMB > maxMemoryMB:
		return invalidf("memory_mb %d is out of range: use 1-%d", memoryMB, maxMemoryMB)
	case attempts < 0 || attempts > maxAttempts:
		return invalidf("max_attempts %d is out of range: use 1-%d", attempts, maxAttempts)
	case concurrency < 0 || concurrency > maxConcurrency:
		return invalidf("max_concurrency %d is out of range: use 0 (no cap) to %d", concurrency, maxConcurrency)
	case outputBytes < 0 || outputBytes > maxOutputBytes:
		return invalidf("max_output_bytes %d is out of range: use 1-%d (16 MiB), or 0 for the default %d (1 MiB)", outputBytes, maxOutputBytes, store.DefaultMaxOutputBytes)
	case logBytes < 0 || logBytes > maxLogBytes:
		return invalidf("max_log_bytes %d is out of range: use 1-%d (1 GiB), or 0 for the default %d (16 MiB)", logBytes, maxLogBytes, store.DefaultMaxLogBytes)
	case backoff < 0 || backoffMax < 0:
		return invalidf("retry backoff must not be negative")
	case backoff > 0 && backoffMax > 0 && backoffMax < backoff:
		return invalidf("retry_backoff_max %s is below retry_backoff %s", backoffMax, backoff)
	}
	return nil
}

func validateTask(priority int, key, collection string) error {
	if priority < 0 || priority > maxPriority {
		return invalidf("priority %d is out of range: use 0-%d (higher runs first)", priority, maxPriority)
	}
	if len(key) > maxKeyBytes {
		return invalidf("key is %d bytes: use at most %d", len(key), maxKeyBytes)
	}
	if collection != "" {
		if err := validateName("collection", collection); err != nil {
			return err
		}
	}
	return nil
}
