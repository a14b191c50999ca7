package store

import (
	"strconv"

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
}

// pushStride is the number of values processDueScript returns per push.
const pushStride = 5

// enqueuedFrom reads one push of processDueScript's reply after its queue
// and id: state before, traceparent, lambda.
func enqueuedFrom(id string, v []any) Enqueued {
	str := func(i int) string { s, _ := v[i].(string); return s }
	e := Enqueued{TaskID: id, TraceParent: traceParentOf(str(1)), Lambda: str(2)}
	if st, err := strconv.Atoi(str(0)); err == nil {
		e.From = atfv1.TaskState(st)
	}
	return e
}
