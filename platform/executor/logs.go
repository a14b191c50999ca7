package executor

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// logLines keeps the atf_v1 log calls of one attempt, for the task's logs.
// hostmod bounds their total (Limits.MaxLogBytes), so nothing more is cut
// here.
type logLines struct {
	mu sync.Mutex
	b  strings.Builder
}

// add keeps one log call as "[level] message".
func (l *logLines) add(level slog.Level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, "[%s] %s\n", strings.ToLower(level.String()), strings.TrimRight(msg, "\n"))
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// attemptLogs is what one attempt adds to its task's logs (SetResult's
// logs): a header line naming the attempt and its outcome, the log calls,
// then the end of stderr. The two are captured apart (the sandbox keeps
// only stderr's tail, with no times), so they are not interleaved; a
// crash report, the usual last words of a module, is on stderr and so
// comes last. A first attempt that logged nothing adds nothing: most tasks
// then cost the store no write; a later one always adds its header, so
// that the logs of an attempt are never taken for those of the next.
func attemptLogs(attempt int32, outcome atfv1.Outcome, calls, stderr string) string {
	if calls == "" && stderr == "" && attempt <= 1 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- attempt %d: %s ---\n", attempt, strings.ToLower(strings.TrimPrefix(outcome.String(), "OUTCOME_")))
	b.WriteString(calls)
	b.WriteString(stderr)
	if stderr != "" && !strings.HasSuffix(stderr, "\n") {
		b.WriteByte('\n')
	}
	return b.String()
}
