package frontend

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// nameRE is the rule validName implements.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func FuzzValidName(f *testing.F) {
	for _, s := range []string{"", "a", "hello-world_1.2", ".a", "_a", "-a", "a b", "é", "A9", strings.Repeat("x", 128), strings.Repeat("x", 129), "a\n", "a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameRE.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}

// TestTaskToProto: the task's fields, each timestamp and the duration
// as timestamppb.New and durationpb.New give them, zero times left out,
// the trace id from the traceparent; batchResponse gives the same.
func TestTaskToProto(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(1700000000+s, 123456789) }
	for _, task := range []store.Task{
		{ID: "t1", Namespace: "default", Lambda: "echo", LambdaVersion: 3, State: atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE,
			Attempt: 2, MaxAttempts: 5, Priority: 7, Key: "k", Collection: "c", Payload: []byte("abc"),
			ExecuteAt: at(1), CreatedAt: at(2), EnqueuedAt: at(3), StartedAt: at(4), FinishedAt: at(5), UpdatedAt: at(6), RetryAt: at(7),
			Duration: 1500 * time.Millisecond, Progress: 40, Output: []byte("out"), OutputTruncated: true, Parked: true,
			Error:       &atfv1.TaskError{Message: "boom"},
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{ID: "t2", State: atfv1.TaskState_TASK_STATE_ENQUEUED, CreatedAt: at(2), RetryAt: at(7)},
	} {
		want := &atfv1.Task{
			Id: task.ID, Namespace: task.Namespace, Lambda: task.Lambda, LambdaVersion: task.LambdaVersion, State: task.State,
			Attempt: int32(task.Attempt), MaxAttempts: int32(task.MaxAttempts), Priority: int32(task.Priority), Key: task.Key,
			Collection: task.Collection, ExecuteAt: ts(task.ExecuteAt), CreatedAt: ts(task.CreatedAt), EnqueuedAt: ts(task.EnqueuedAt),
			StartedAt: ts(task.StartedAt), FinishedAt: ts(task.FinishedAt), UpdatedAt: ts(task.UpdatedAt), Progress: int32(task.Progress),
			Error: task.Error, Output: task.Output, OutputTruncated: task.OutputTruncated, PayloadSize: int64(len(task.Payload)),
			Parked: task.Parked,
		}
		if task.State == atfv1.TaskState_TASK_STATE_RETRIABLE_FAILURE {
			want.RetryAt = timestamppb.New(task.RetryAt)
		}
		if task.Duration > 0 {
			want.Duration = durationpb.New(task.Duration)
		}
		if task.TraceParent != "" {
			want.TraceId = "4bf92f3577b34da6a3ce929d0e0e4736"
		}
		if got := TaskToProto(task); !proto.Equal(got, want) {
			t.Errorf("TaskToProto(%s) = %v, want %v", task.ID, got, want)
		}
		res := batchResponse([]store.BatchResult{{Task: task}, {Task: task, Deduplicated: true}})
		for i, r := range res.GetResults() {
			if !proto.Equal(r.GetTask(), want) || r.GetDeduplicated() != (i == 1) {
				t.Errorf("batchResponse %s [%d] = %v, want %v", task.ID, i, r, want)
			}
		}
	}
}
