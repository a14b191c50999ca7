package guest

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Level is a log level.
type Level int32

// Log levels (ABI.md).
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// Log records msg with the task (and as an event on its trace). The host
// keeps up to 64 KiB of logs per task and 4 KiB per line; past that Log
// returns ErrLimit.
func Log(level Level, msg string) error { return check("log", hostLog(int32(level), msg)) }

// Debugf, Infof, Warnf and Errorf format and Log.
func Debugf(format string, args ...any) { _ = Log(LevelDebug, fmt.Sprintf(format, args...)) }
func Infof(format string, args ...any)  { _ = Log(LevelInfo, fmt.Sprintf(format, args...)) }
func Warnf(format string, args ...any)  { _ = Log(LevelWarn, fmt.Sprintf(format, args...)) }
func Errorf(format string, args ...any) { _ = Log(LevelError, fmt.Sprintf(format, args...)) }

// Progress reports how far the task is (0-100; it shows in the task's
// progress with the next heartbeat) and returns true when the task was
// cancelled: the handler should then stop soon (atf stops it anyway a
// moment later). A cancel also cancels the handler's context, with cause
// ErrCancelled.
func Progress(percent int) (cancelled bool) {
	if percent < 0 || percent > 100 {
		return false
	}
	if hostProgress(int32(percent)) == 1 {
		cancelRunning()
		return true
	}
	return false
}

// Span is a tracing span, a child of the task's execute span or of
// another Span.
type Span struct{ id int32 }

type spanKey struct{}

// StartSpan starts a span named name, a child of the span in ctx (else of
// the task's execute span), and returns ctx carrying it. End it with
// Span.End. A span the handler never ends is ended when the task ends,
// marked as an error.
func StartSpan(ctx context.Context, name string) (context.Context, *Span) {
	var parent int32
	if s, ok := ctx.Value(spanKey{}).(*Span); ok && s != nil {
		parent = s.id
	}
	id := hostSpanStart(parent, name)
	if id <= 0 {
		return ctx, &Span{} // a no-op span: past the span limit
	}
	s := &Span{id: id}
	return context.WithValue(ctx, spanKey{}, s), s
}

// SetAttribute sets a string attribute on the span.
func (s *Span) SetAttribute(key, value string) {
	if s.id > 0 {
		hostSpanSetAttribute(s.id, key, value)
	}
}

// End ends the span; a non-nil err marks it failed with err's message.
func (s *Span) End(err error) {
	if s.id <= 0 {
		return
	}
	if err != nil {
		hostSpanEnd(s.id, 1, err.Error())
	} else {
		hostSpanEnd(s.id, 0, "")
	}
	s.id = 0
}

// KVGet returns the value stored under key in the namespace's key-value
// store, or an error matching ErrNotFound.
func KVGet(key string) ([]byte, error) {
	n, c := hostKVGet(key)
	if err := check("kv_get", c); err != nil {
		return nil, err
	}
	return readResult(n), nil
}

// KVSet stores value under key; ttl 0 keeps it until deleted. Values are
// capped at 1 MiB (ErrTooLarge), keys at 512 bytes.
func KVSet(key string, value []byte, ttl time.Duration) error {
	if ttl < 0 {
		return &Error{Op: "kv_set", Code: codeInvalid}
	}
	return check("kv_set", hostKVSet(key, value, ttl.Milliseconds()))
}

// KVDelete deletes key; deleting a missing key is not an error.
func KVDelete(key string) error {
	err := check("kv_delete", hostKVDelete(key))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// ScheduleOptions are the optional settings of a follow-up task.
type ScheduleOptions struct {
	// Delay before the task runs; 0: now.
	Delay time.Duration
	// Key deduplicates: a live task with the same key is returned
	// instead of a new one (so a retried handler schedules once).
	Key string
}

// Schedule schedules a task of lambda ("" for this lambda) with payload,
// in this task's namespace, and returns its id.
func Schedule(lambda string, payload []byte, opts ScheduleOptions) (string, error) {
	n, c := hostSchedule(lambda, payload, opts.Delay.Milliseconds(), opts.Key)
	if err := check("schedule", c); err != nil {
		return "", err
	}
	return string(readResult(n)), nil
}
