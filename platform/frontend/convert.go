package frontend

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/tracectx"
)

func lambdaToProto(l store.Lambda) *atfv1.Lambda {
	return &atfv1.Lambda{
		Namespace:       l.Namespace,
		Name:            l.Name,
		Version:         l.Version,
		Sha256:          l.SHA256,
		SizeBytes:       l.SizeBytes,
		Abi:             l.ABI,
		Timeout:         durationpb.New(l.Timeout),
		MemoryMb:        int32(l.MemoryMB),
		MaxAttempts:     int32(l.MaxAttempts),
		MaxConcurrency:  int32(l.MaxConcurrency),
		AllowedHosts:    l.AllowedHosts,
		RetryBackoff:    durationpb.New(l.RetryBackoff),
		RetryBackoffMax: durationpb.New(l.RetryBackoffMax),
		MaxOutputBytes:  int32(l.MaxOutputBytes),
		MaxLogBytes:     int32(l.MaxLogBytes),
		Imports:         l.Imports,
		CreatedAt:       ts(l.CreatedAt),
		UpdatedAt:       ts(l.UpdatedAt),
	}
}

// TaskToProto is the Task a client sees.
func TaskToProto(t store.Task) *atfv1.Task {
	p := new(taskProto)
	p.fill(t)
	return &p.task
}

// taskProto is a Task with room for its timestamps: one allocation
// instead of one per timestamp (batchResponse allocates a batch's at once).
type taskProto struct {
	task  atfv1.Task
	times [8]timestamppb.Timestamp
	dur   durationpb.Duration
}

func (p *taskProto) fill(t store.Task) {
	n := 0
	ts := func(t time.Time) *timestamppb.Timestamp {
		if t.IsZero() {
			return nil
		}
		x := &p.times[n]
		n++
		x.Seconds, x.Nanos = t.Unix(), int32(t.Nanosecond())
		return x
	}
	p.task = atfv1.Task{
		Id:              t.ID,
		Namespace:       t.Namespace,
		Lambda:          t.Lambda,
		LambdaVersion:   t.LambdaVersion,
		State:           t.State,
		Attempt:         int32(t.Attempt),
		MaxAttempts:     int32(t.MaxAttempts),
		Priority:        int32(t.Priority),
		Key:             t.Key,
		Collection:      t.Collection,
		ExecuteAt:       ts(t.ExecuteAt),
		CreatedAt:       ts(t.CreatedAt),
		EnqueuedAt:      ts(t.EnqueuedAt),
		StartedAt:       ts(t.StartedAt),
		FinishedAt:      ts(t.FinishedAt),
		UpdatedAt:       ts(t.UpdatedAt),
		Progress:        int32(t.Progress),
		Error:           t.Error,
		Output:          t.Output,
		OutputTruncated: t.OutputTruncated,
		PayloadSize:     int64(len(t.Payload)),
		TraceId:         tracectx.TraceID(t.TraceParent),
		Parked:          t.Parked,
	}
	if t.State == atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE {
		p.task.RetryAt = ts(t.RetryAt)
	}
	if t.Duration > 0 {
		d := t.Duration.Nanoseconds()
		p.dur.Seconds, p.dur.Nanos = d/1e9, int32(d%1e9)
		p.task.Duration = &p.dur
	}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
