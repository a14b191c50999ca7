package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// HeartbeatTimeoutMessage is the error message of a task whose executor
// stopped heartbeating.
const HeartbeatTimeoutMessage = "executor stopped heartbeating"

// ProcessDue applies the state table to up to limit of a partition's due
// triggers (score <= now), in one script:
//
//	NEW                          -> ENQUEUED (its trigger is execute_at
//	                                less Options.DispatchLead)
//	ENQUEUED (enqueue timeout)   -> pushed again, stays ENQUEUED
//	CLAIMED (claim timeout)      -> ENQUEUED, attempt - 1 (it never ran);
//	                                CANCELLED if cancel was requested
//	PROCESSING (heartbeat t/o)   -> ENQUEUED with a HEARTBEAT_TIMEOUT error,
//	                                FATAL_FAILURE (attempts exhausted) at max
//	                                attempts, CANCELLED if cancel was requested
//	RETRIABLE_FAILURE            -> ENQUEUED
//
// Every task left ENQUEUED gets the trigger now + t.Enqueue and is pushed
// to its queue after the script (queue keys live outside the partition's
// slot). A CLAIMED task's deadline is its claim plus t.Claim: Claim leaves
// the enqueue trigger in place when it comes no later than that, and a
// task found claimed and alive gets its deadline as its trigger (the
// controllers' claim timeout must not be longer than t.Claim; zero:
// the trigger is the deadline). The heartbeat deadline was set by
// Heartbeat when it stored the trigger.
//
// moved counts the tasks handled; next is the earliest trigger left in the
// partition (zero when none). next <= now means more are due already.
func (s *Store) ProcessDue(ctx context.Context, partition int, t Timeouts, limit int) (int, time.Time, error) {
	if partition < 0 || partition >= s.opts.Partitions {
		return 0, time.Time{}, errorf(ErrInvalid, "partition %d out of range 0-%d", partition, s.opts.Partitions-1)
	}
	if limit <= 0 {
		limit = 100
	}
	enqueue := t.Enqueue
	if enqueue <= 0 {
		enqueue = s.opts.EnqueueTimeout
	}
	hbErr := &atfv1.TaskError{
		Kind:    atfv1.ErrorKind_ERROR_KIND_HEARTBEAT_TIMEOUT,
		Message: HeartbeatTimeoutMessage,
	}
	blob, err := encodeError(hbErr)
	if err != nil {
		return 0, time.Time{}, err
	}
	lastBlob, err := encodeError(exhausted(hbErr))
	if err != nil {
		return 0, time.Time{}, err
	}
	now := s.now()
	res, err := processDueScript.Run(ctx, s.rdb, []string{triggerKey(partition)},
		ms(now), limit, partPrefix(partition), ms(now.Add(enqueue)), blob, lastBlob,
		t.Claim.Milliseconds()).Slice()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: process due triggers of partition %d: %w", partition, err)
	}
	moved, _ := res[0].(int64)
	var next time.Time
	if first, _ := res[1].(string); first != "" {
		// Scores come back as strings; they are whole milliseconds.
		f, err := strconv.ParseFloat(first, 64)
		if err == nil {
			next = time.UnixMilli(int64(f)).UTC()
		}
	}
	if len(res) > 2 {
		pipe := s.rdb.Pipeline()
		var enqueued []Enqueued
		for i := 2; i+pushStride-1 < len(res); i += pushStride {
			q, _ := res[i].(string)
			id, _ := res[i+1].(string)
			pipe.LPush(ctx, q, id)
			if s.opts.OnEnqueue != nil {
				enqueued = append(enqueued, enqueuedFrom(id, res[i+2:i+pushStride]))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			// The tasks are ENQUEUED with a trigger: the next pass pushes
			// them again.
			return int(moved), next, fmt.Errorf("store: push due tasks of partition %d: %w", partition, err)
		}
		if len(enqueued) > 0 {
			s.opts.OnEnqueue(ctx, enqueued)
		}
	}
	return int(moved), next, nil
}

// Wakeups reports partitions that got a trigger earlier than any they had
// (Schedule of a later task, a retry backoff, a new claim deadline): a
// consumer sleeping until that partition's earliest trigger should run
// ProcessDue now and sleep again. The channel is buffered; the goroutine
// behind it stops and closes the channel when ctx ends. Wakeups returns
// once the subscription is in place.
func (s *Store) Wakeups(ctx context.Context) <-chan int {
	out := make(chan int, 64)
	s.subscribe(ctx, wakeChannel, func(payload string) {
		part, _, _ := strings.Cut(payload, " ")
		p, err := strconv.Atoi(part)
		if err != nil || p < 0 || p >= s.opts.Partitions {
			return
		}
		select {
		case out <- p:
		case <-ctx.Done():
		}
	}, func() { close(out) })
	return out
}
