package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/platform/store"
)

// TestRetentionKeepsRedisFlat: with a retention of one second, rounds of
// tasks run to their end while a consumer trims; once the last round's
// retention has run out, Redis holds what it held before any task: the
// trim deletes the tasks and their index entries, nothing grows.
func TestRetentionKeepsRedisFlat(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t)
	s := store.New(rdb, store.Options{Retention: time.Second})
	ctx := t.Context()
	if _, err := s.DeployLambda(ctx, store.Lambda{Namespace: "default", Name: "echo", SHA256: "00"}); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	c := New(Config{Store: s, Partitions: allPartitions(s), TrimEvery: 200 * time.Millisecond, Logger: quiet})
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })

	before := keys(t, rdb)
	for round := range 3 {
		runTasks(t, s, 300, fmt.Sprintf("round %d", round))
		time.Sleep(500 * time.Millisecond)
	}
	// Every task finished; within the retention and a trim round or two
	// every key they made is gone.
	deadline := time.Now().Add(5 * time.Second)
	for len(keys(t, rdb)) > len(before) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := keys(t, rdb); len(after) != len(before) {
		t.Fatalf("keys before the tasks %v, after %v", before, after)
	}
}

func allPartitions(s *store.Store) []int {
	ps := make([]int, s.Partitions())
	for i := range ps {
		ps[i] = i
	}
	return ps
}

// runTasks schedules n tasks due now, claims them and records each one's
// success.
func runTasks(t *testing.T, s *store.Store, n int, what string) {
	t.Helper()
	ctx := t.Context()
	var reqs []store.ClaimRequest
	for range n {
		task, _, err := s.Schedule(ctx, store.NewTask{Namespace: "default", Lambda: "echo", Payload: []byte("x")})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		reqs = append(reqs, store.ClaimRequest{TaskID: task.ID, LambdaVersion: 1})
	}
	claimed, err := s.Claim(ctx, reqs, time.Minute)
	if err != nil || len(claimed) != n {
		t.Fatalf("%s: claimed %d of %d: %v", what, len(claimed), n, err)
	}
	for _, task := range claimed {
		if _, err := s.SetResult(ctx, store.Result{TaskID: task.ID, Token: task.Token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: []byte("ok")}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// keys lists the keys but the queues: the test claims the tasks without
// popping them (a controller's pops empty a queue, and an empty list is no
// key).
func keys(t *testing.T, rdb redis.UniversalClient) []string {
	t.Helper()
	ks, err := rdb.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(ks, func(k string) bool { return strings.HasPrefix(k, "atf:{q}:") })
}
