package main

// Scheduling behaviour of the whole platform in one process: strict
// priority and max_concurrency. (Speed — pickup latency, isolation — is
// measured by benchmarks, not asserted here.)

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
)

// TestStrictPriority: with one execution slot and a backlog of ready low
// tasks, high tasks arriving later each start before the next low one
// (the one low task already handed out when a high one arrives aside). A
// high task arrives when its Schedule returns (it is in its queue then):
// on a loaded machine the call itself can outlast a trivial low task or
// two, which start before the high task exists.
func TestStrictPriority(t *testing.T) {
	t.Parallel()
	bp := startPlatform(t, 1)
	target := bp.status.done.Load() + 300 + 20
	var lows []string
	for range 300 {
		lows = append(lows, bp.schedule(t, &atfv1.ScheduleRequest{Lambda: "noop", Priority: 0}))
	}
	type high struct {
		id        string
		scheduled int64
	}
	var highs []high
	for range 20 {
		id := bp.schedule(t, &atfv1.ScheduleRequest{Lambda: "noop", Priority: 9})
		highs = append(highs, high{id, time.Now().UnixNano()})
		time.Sleep(2 * time.Millisecond)
	}
	bp.waitDone(t, target, 2*time.Minute)

	bp.starts.mu.Lock()
	defer bp.starts.mu.Unlock()
	lowAt := make([]int64, 0, len(lows))
	for _, id := range lows {
		lowAt = append(lowAt, bp.starts.at[id])
	}
	lastLow := int64(0)
	for _, at := range lowAt {
		lastLow = max(lastLow, at)
	}
	for _, h := range highs {
		start := bp.starts.at[h.id]
		if start == 0 {
			t.Fatalf("high task %s never started", h.id)
		}
		overtook := 0
		for _, at := range lowAt {
			if at > h.scheduled && at < start {
				overtook++
			}
		}
		if overtook > 1 {
			t.Errorf("high task %s: %d low tasks started after it was scheduled and before it started", h.id, overtook)
		}
	}
	if first := bp.starts.at[highs[0].id]; first > lastLow {
		t.Fatalf("the backlog of low tasks drained before the first high task started: the test proved nothing")
	}
}

// TestMaxConcurrency: a lambda with max_concurrency 2 never runs more than
// two tasks at once, even with eight free slots, and does reach two.
func TestMaxConcurrency(t *testing.T) {
	t.Parallel()
	bp := startPlatform(t, 8)
	if _, err := bp.p.frontend.DeployLambda(t.Context(), &atfv1.DeployLambdaRequest{
		Name: "capped", Wasm: testmodules.Build(t, "sleep"), MaxConcurrency: 2, Timeout: durationpb.New(time.Minute),
	}); err != nil {
		t.Fatal(err)
	}
	bp.starts.resetPeak()
	target := bp.status.done.Load() + 12
	for range 12 {
		bp.schedule(t, &atfv1.ScheduleRequest{Lambda: "capped", Payload: []byte("150")})
	}
	bp.waitDone(t, target, 2*time.Minute)
	bp.starts.mu.Lock()
	peak := bp.starts.peak
	bp.starts.mu.Unlock()
	if peak != 2 {
		t.Fatalf("peak of concurrent executions = %d, want exactly max_concurrency 2", peak)
	}
}
