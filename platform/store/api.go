package store

// This file is the store's contract: the types and methods the platform's
// roles use. Implementations live in lambda.go, task.go, work.go (pop,
// claim, heartbeat, result), due.go (consumer), list.go and scripts.go.

import (
	"context"
	"errors"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// Errors callers test with errors.Is. Each is wrapped with the detail a
// person needs (which lambda, which task, which state).
var (
	// ErrNotFound: no such lambda, task or module.
	ErrNotFound = errors.New("not found")
	// ErrClaimLost: the fencing token is not the task's current claim.
	ErrClaimLost = errors.New("claim lost")
	// ErrWrongState: the task is in a terminal state and the change needs a
	// live one (or the other way round, for Retry).
	ErrWrongState = errors.New("wrong state")
	// ErrInvalid: an argument the store cannot use (a malformed page
	// token, a priority out of 0-9, an unknown outcome).
	ErrInvalid = errors.New("invalid argument")
)

// Defaults of a lambda's policy, applied by DeployLambda to unset fields.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultMemoryMB        = 128
	DefaultMaxAttempts     = 3
	DefaultRetryBackoff    = time.Second
	DefaultRetryBackoffMax = 10 * time.Minute
	DefaultMaxOutputBytes  = 1 << 20  // stdout of one execution
	DefaultMaxLogBytes     = 16 << 20 // stderr of one execution
	DefaultPartitions      = 16
	DefaultRetention       = 7 * 24 * time.Hour
	DefaultEnqueueTimeout  = 30 * time.Second
)

// DefaultNamespace is the namespace of every caller until callers are
// told apart (frontend.DefaultNamespace); the store writes no namespace
// field for a task of it.
const DefaultNamespace = "default"

// DefaultDispatchLead is atf server's --dispatch-lead (Options.DispatchLead):
// enough for a task to cross the store consumer's pass, its queue, the
// claim and the executor's long-poll under load (their p99 measured
// ~8-10 ms on a busy 2-core machine), short enough that the execution
// slots it holds while waiting stay few (lead x scheduled rate).
const DefaultDispatchLead = 20 * time.Millisecond

// MaxDispatchLead bounds Options.DispatchLead.
const MaxDispatchLead = time.Second

// Options configures a Store. Zero fields take the defaults above.
type Options struct {
	// Partitions is the number of task partitions. It is fixed for the life
	// of a Redis database: changing it strands existing tasks. Default 16.
	Partitions int
	// Retention is how long finished tasks are kept. Default 7 days.
	Retention time.Duration
	// Now is the clock; default time.Now. Tests inject their own. Scripts
	// never read Redis's clock: every time they store comes from here.
	Now func() time.Time
	// EnqueueTimeout is the next trigger of a task Schedule or Retry
	// enqueues directly: when no executor claims it by then, the consumer
	// pushes it again. Default DefaultEnqueueTimeout.
	EnqueueTimeout time.Duration
	// DispatchLead is how long before its execute_at a scheduled task is
	// enqueued: it travels to an executor (the consumer's pass, the queue,
	// the claim, the long-poll's answer) during the lead and the executor
	// holds it until its time (Work.execute_at), so it starts on time
	// rather than those round trips late. It is never started early. Zero
	// (the default): enqueued at execute_at. A task due within the lead
	// when scheduled is enqueued at once.
	DispatchLead time.Duration
	// OnEnqueue, when set, is told of the tasks each ProcessDue pushed to
	// their queues, after the push (observe.go). It must not block.
	OnEnqueue func(ctx context.Context, tasks []Enqueued)
}

// Lambda is a deployed lambda as the store keeps it.
type Lambda struct {
	Namespace       string
	Name            string
	Version         int64
	SHA256          string
	SizeBytes       int64
	ABI             atfv1.Abi
	Timeout         time.Duration
	MemoryMB        int
	MaxAttempts     int
	MaxConcurrency  int
	AllowedHosts    []string
	RetryBackoff    time.Duration
	RetryBackoffMax time.Duration
	MaxOutputBytes  int // stdout of one execution
	MaxLogBytes     int // stderr of one execution
	Imports         []string
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// NewTask is what Schedule stores.
type NewTask struct {
	Namespace   string
	Lambda      string
	Payload     []byte
	ExecuteAt   time.Time // zero: now
	Priority    int       // 0-9
	Key         string
	Collection  string
	MaxAttempts int // copied from the lambda at schedule time
	TraceParent string
}

// Task is a task as the store keeps it.
type Task struct {
	ID              string
	Namespace       string
	Lambda          string
	LambdaVersion   int64
	State           atfv1.TaskState
	Attempt         int
	MaxAttempts     int
	Priority        int
	Key             string
	Collection      string
	Payload         []byte
	ExecuteAt       time.Time
	CreatedAt       time.Time
	EnqueuedAt      time.Time
	StartedAt       time.Time
	FinishedAt      time.Time
	UpdatedAt       time.Time
	RetryAt         time.Time
	Progress        int
	Error           *atfv1.TaskError
	Output          []byte
	OutputTruncated bool
	Duration        time.Duration
	TraceParent     string
	// LastExecution is the traceparent of the latest attempt's execute
	// span (RecordAttempt), so that a retry's span can link to it.
	LastExecution string
	// Token is the fencing token of the current claim (0 before any).
	Token int64
	// CancelRequested is set when a running task is cancelled; the next
	// heartbeat answers DIRECTIVE_CANCEL.
	CancelRequested bool
	// Parked is set while the task waits (NEW, out of its queue) because
	// its lambda or collection is paused (gate.go).
	Parked bool
	// RequeuedAt is when an operator's Retry or Resume last enqueued the
	// task (zero: never): its next run was asked for then.
	RequeuedAt time.Time
}

// DueAt is when the task's current run was due: its execute_at, or when
// it was created (scheduled for a time already past) or a Retry or a
// Resume enqueued it, if later. Start lateness and pickup latency count
// from it, so that neither a dead letter retried a week later, nor the
// time a lambda stayed paused, nor a backfill scheduled for last month
// passes for the platform's own delay.
func (t Task) DueAt() time.Time {
	due := t.ExecuteAt
	for _, at := range [...]time.Time{t.CreatedAt, t.RequeuedAt} {
		if at.After(due) {
			due = at
		}
	}
	return due
}

// Timeouts are the state-table timeouts the consumer applies.
type Timeouts struct {
	Enqueue   time.Duration // ENQUEUED longer than this is pushed again
	Claim     time.Duration // CLAIMED without a heartbeat longer than this is re-enqueued
	Heartbeat time.Duration // PROCESSING without a heartbeat longer than this is re-enqueued
}

// Push is a queue entry to write after a state change.
type Push struct {
	Queue  string // queue key
	TaskID string
}

// Beat is one task's heartbeat.
type Beat struct {
	TaskID   string
	Token    int64
	Progress int // -1: unchanged
}

// Result is an execution's outcome as the HSC records it.
type Result struct {
	TaskID          string
	Token           int64
	Outcome         atfv1.Outcome
	Output          []byte
	OutputTruncated bool
	Error           *atfv1.TaskError
	Duration        time.Duration
	// RetryAt is when a RETRY outcome runs again (the HSC computes the
	// backoff). Ignored for other outcomes.
	RetryAt time.Time
	// Slot is the running set whose slot the task holds (its lambda has a
	// max_concurrency); the result frees it. Empty: none.
	Slot string
}

// ListFilter selects tasks for ListTasks.
type ListFilter struct {
	Namespace  string
	Lambda     string
	State      atfv1.TaskState // UNSPECIFIED: any
	Collection string          // empty: any
	// DeadLetters keeps only FATAL_FAILURE tasks whose attempts are spent
	// (Error.AttemptsExhausted): ATF's dead-letter queue.
	DeadLetters bool
	PageSize    int // default 100, at most 1000
	PageToken   string
}
