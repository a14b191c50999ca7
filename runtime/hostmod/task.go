package hostmod

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/atfhq/atf/runtime/sandbox"
)

// Log levels as the guest passes them.
const (
	LevelDebug = 0
	LevelInfo  = 1
	LevelWarn  = 2
	LevelError = 3
)

var levels = [...]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}

// tracerName is the instrumentation scope of the guest's spans.
const tracerName = "github.com/atfhq/atf/runtime/hostmod"

// log(level i32, msg_ptr i32, msg_len i32) -> i32
func hostLog(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	level, ptr, n := i32(stack[0]), u32(stack[1]), u32(stack[2])
	msg := g.string("message", ptr, n)
	if level < 0 || int(level) >= len(levels) {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	if len(msg) > t.limits.MaxLogLine {
		msg = truncate(msg, t.limits.MaxLogLine) + "…"
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	t.mu.Lock()
	over := t.logged+len(msg) > t.limits.MaxLogBytes
	first := false
	if over {
		t.droppedLogs++
		first = t.droppedLogs == 1
	} else {
		t.logged += len(msg)
	}
	t.mu.Unlock()
	if over {
		if first && t.Log != nil { // where the logs are kept, say they stop here
			t.Log(slog.LevelWarn, fmt.Sprintf("atf: log calls past %d bytes of messages are dropped (max_log_bytes, at most 64 KiB)", t.limits.MaxLogBytes))
		}
		stack[0] = status(int32(CodeLimit))
		return
	}
	lv := levels[level]
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("log", trace.WithAttributes(
			attribute.String("log.severity", lv.String()),
			attribute.String("log.message", msg)))
	}
	if t.Log != nil {
		t.Log(lv, msg)
	}
	stack[0] = status(int32(OK))
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// progress(percent i32) -> i32: 0 go on, 1 cancel requested.
func hostProgress(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	p := i32(stack[0])
	if p < 0 || p > 100 {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	cancel := false
	if t.Progress != nil {
		cancel = t.Progress(int(p))
	}
	if cancel {
		stack[0] = 1
	} else {
		stack[0] = 0
	}
}

// span_start(parent i32, name_ptr i32, name_len i32) -> i32 (span id > 0)
func hostSpanStart(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	parent, ptr, n := i32(stack[0]), u32(stack[1]), u32(stack[2])
	name := g.string("name", ptr, n)
	if len(name) > 256 || name == "" {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var pctx context.Context
	switch s, ok := t.spans[parent]; {
	case parent == 0:
		pctx = ctx
	case ok:
		pctx = trace.ContextWithSpan(ctx, s)
	default:
		stack[0] = status(int32(CodeInvalid))
		return
	}
	if t.nspans >= t.limits.MaxSpans {
		stack[0] = status(int32(CodeLimit))
		return
	}
	t.nspans++
	tracer := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName)
	_, span := tracer.Start(pctx, strings.ToValidUTF8(name, "\uFFFD"))
	id := int32(t.nspans)
	t.spans[id] = span
	stack[0] = status(id)
}

// span_set_attribute(span i32, key_ptr, key_len, val_ptr, val_len i32) -> i32
func hostSpanSetAttribute(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	id := i32(stack[0])
	key := g.string("key", u32(stack[1]), u32(stack[2]))
	val := g.string("value", u32(stack[3]), u32(stack[4]))
	if key == "" || len(key) > 256 || len(val) > 4096 {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	t.mu.Lock()
	s, ok := t.spans[id]
	t.mu.Unlock()
	if !ok {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	s.SetAttributes(attribute.String(strings.ToValidUTF8(key, "\uFFFD"), strings.ToValidUTF8(val, "\uFFFD")))
	stack[0] = status(int32(OK))
}

// span_end(span i32, error i32, msg_ptr i32, msg_len i32) -> i32
func hostSpanEnd(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	id, isErr := i32(stack[0]), i32(stack[1])
	msg := g.string("message", u32(stack[2]), u32(stack[3]))
	t.mu.Lock()
	s, ok := t.spans[id]
	delete(t.spans, id)
	t.mu.Unlock()
	if !ok {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	if isErr != 0 {
		s.SetStatus(codes.Error, strings.ToValidUTF8(truncate(msg, 1024), "\uFFFD"))
	}
	s.End()
	stack[0] = status(int32(OK))
}

// result_read(buf_ptr i32, buf_len i32) -> i32 (bytes copied)
func hostResultRead(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	ptr, n := u32(stack[0]), u32(stack[1])
	g.check("buffer", ptr, n)
	t.mu.Lock()
	rest := t.result[t.pos:]
	k := min(int(n), len(rest))
	chunk := rest[:k]
	t.pos += k
	t.mu.Unlock()
	g.put("buffer", ptr, chunk)
	stack[0] = status(int32(k))
}

// MaxEnvNameBytes bounds the name task_env looks up (longer: CodeInvalid).
const MaxEnvNameBytes = 256

// task_env(name_ptr i32, name_len i32, buf_ptr i32, buf_len i32) -> i32
//
// Returns the length of the task's environment variable name and, when it
// fits in buf_len bytes, copies the value to buf_ptr (else nothing is
// copied: the guest calls again with a buffer that large). The pending
// result is left alone. In the sandbox the environment is the Job's (per
// task, also for a reactor instance whose WASI environment was fixed at
// instantiation); outside it, Task.Env.
func hostTaskEnv(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	nptr, nlen := u32(stack[0]), u32(stack[1])
	bptr, blen := u32(stack[2]), u32(stack[3])
	g.check("name", nptr, nlen)
	g.check("buffer", bptr, blen)
	if nlen == 0 || nlen > MaxEnvNameBytes {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	name := g.string("name", nptr, nlen)
	env := sandbox.TaskEnv(ctx)
	if env == nil {
		env = t.Env
	}
	v, ok := env[name]
	switch {
	case !ok:
		stack[0] = status(int32(CodeNotFound))
		return
	case len(v) > 1<<30:
		stack[0] = status(int32(CodeTooLarge)) // not representable as an i32 length
		return
	}
	if len(v) <= int(blen) {
		g.put("buffer", bptr, []byte(v))
	}
	stack[0] = status(int32(len(v)))
}
