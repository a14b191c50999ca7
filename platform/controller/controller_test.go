package controller

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/redistest"
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

// TestStopEndsBlockedPops: when Run returns (a shutdown), a NextWork
// blocked on empty queues answers at once rather than when its pop's
// slice ends (Redis does not end a blocked pop because its caller went
// away), and later NextWork calls do not block.
func TestStopEndsBlockedPops(t *testing.T) {
	rdb := redistest.Start(t)
	st := store.New(rdb, store.Options{})
	if _, err := st.DeployLambda(t.Context(), store.Lambda{Namespace: "default", Name: "echo", SHA256: "00"}); err != nil {
		t.Fatal(err)
	}
	c := New(Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	c.Subscribe(t.Context())
	ctx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()

	answered := make(chan time.Time, 1)
	go func() {
		_, err := c.NextWork(t.Context(), &atfv1.NextWorkRequest{MaxTasks: 1, Wait: durationpb.New(30 * time.Second)})
		if err != nil {
			t.Error(err)
		}
		answered <- time.Now()
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		blocked := c.polls
		c.mu.Unlock()
		if blocked == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("NextWork never blocked")
		}
	}
	time.Sleep(50 * time.Millisecond) // into the blocking pop
	stopped := time.Now()
	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-answered:
		if d := at.Sub(stopped); d > 2*time.Second {
			t.Fatalf("NextWork answered %s after the stop", d)
		}
	case <-time.After(5 * time.Second): // a pop's slice is 10s
		t.Fatal("NextWork still blocked 5s after the stop")
	}
	start := time.Now()
	if _, err := c.NextWork(t.Context(), &atfv1.NextWorkRequest{MaxTasks: 1, Wait: durationpb.New(30 * time.Second)}); err != nil || time.Since(start) > time.Second {
		t.Fatalf("NextWork after the stop: %v after %s", err, time.Since(start))
	}
}
