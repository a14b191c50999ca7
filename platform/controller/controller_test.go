package controller

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// TestWorkProto: a claimed task's Work carries its own and its lambda's
// fields, the timeout and execute_at as durationpb.New and
// timestamppb.New give them, the slot only for a capped lambda; a poll's
// Works share no message.
func TestWorkProto(t *testing.T) {
	l := &served{
		lambda: store.Lambda{Version: 4, SHA256: "abc", ABI: atfv1.Abi_ABI_REACTOR, Timeout: 90*time.Second + 250*time.Millisecond,
			MemoryMB: 64, MaxOutputBytes: 1000, MaxLogBytes: 2000, AllowedHosts: []string{"example.com"}},
		pop: store.PopLambda{Running: "running-key", Cap: 3},
	}
	due := time.Unix(1700000000, 987654321)
	tasks := []store.Task{
		{ID: "t1", Namespace: "default", Lambda: "echo", Payload: []byte("p"), Attempt: 2, MaxAttempts: 5, Token: 9, Priority: 3,
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", LastExecution: "x", ExecuteAt: due},
		{ID: "t2", Namespace: "default", Lambda: "echo"},
	}
	uncapped := *l
	uncapped.pop.Cap = 0
	protos := make([]workProto, len(tasks))
	for i, task := range tasks {
		s := l
		if i == 1 {
			s = &uncapped
		}
		want := &atfv1.Work{
			TaskId: task.ID, Namespace: task.Namespace, Lambda: task.Lambda, LambdaVersion: 4, ModuleSha256: "abc",
			Abi: atfv1.Abi_ABI_REACTOR, Payload: task.Payload, Attempt: int32(task.Attempt), MaxAttempts: int32(task.MaxAttempts),
			FencingToken: task.Token, Timeout: durationpb.New(l.lambda.Timeout), MemoryMb: 64, MaxOutputBytes: 1000, MaxLogBytes: 2000,
			Traceparent: task.TraceParent, PreviousExecution: task.LastExecution, Priority: int32(task.Priority),
			AllowedHosts: []string{"example.com"},
		}
		if !task.DueAt().IsZero() {
			want.ExecuteAt = timestamppb.New(task.DueAt())
		}
		if s.pop.Cap > 0 {
			want.Slot = "running-key"
		}
		if got := protos[i].fill(task, s); !proto.Equal(got, want) {
			t.Errorf("work of %s = %v, want %v", task.ID, got, want)
		}
	}
	if protos[0].work.GetTimeout() == protos[1].work.GetTimeout() {
		t.Error("two Works share a timeout message")
	}
}
