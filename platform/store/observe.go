package store

import (
	"strconv"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// Enqueued is a task the store consumer's ProcessDue pushed to its queue,
// as told to Options.OnEnqueue: enough to give the push a span in the
// task's trace and to count re-enqueues by reason.
type Enqueued struct {
	TaskID      string
	Lambda      string
	TraceParent string
	// From is the state the task was in: NEW (due), RETRIABLE_FAILURE
	// (backoff over), ENQUEUED (enqueue timeout), CLAIMED (claim timeout)
	// or PROCESSING (heartbeat timeout).
	From atfv1.TaskState
	// Late is how long after its execute_at a NEW task was enqueued.
	Late time.Duration
}

// pushStride is the number of values processDueScript returns per push.
const pushStride = 6

// enqueuedFrom reads one push of processDueScript's reply after its queue
// and id: state before, traceparent, execute_at (ms), lambda.
func enqueuedFrom(id string, v []any, now time.Time) Enqueued {
	str := func(i int) string { s, _ := v[i].(string); return s }
	e := Enqueued{TaskID: id, TraceParent: str(1), Lambda: str(3)}
	if st, err := strconv.Atoi(str(0)); err == nil {
		e.From = atfv1.TaskState(st)
	}
	if e.From == atfv1.TaskState_TASK_STATE_NEW {
		if xa, err := strconv.ParseInt(str(2), 10, 64); err == nil {
			e.Late = now.Sub(time.UnixMilli(xa))
		}
	}
	return e
}
