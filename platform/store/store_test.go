package store

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/redistest"
)

// testClock is the injected clock: tests move it by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testBundle struct {
	rdb   redis.UniversalClient
	store *Store
	clock *testClock
	ctx   context.Context
}

const (
	ns           = "default"
	enqueueTmo   = 30 * time.Second
	claimTmo     = 10 * time.Second
	heartbeatTmo = 20 * time.Second
)

var timeouts = Timeouts{Enqueue: enqueueTmo, Claim: claimTmo, Heartbeat: heartbeatTmo}

// setup gives a test its own real redis-server and a store over it with a
// test clock. With ATF_TEST_REDIS=cluster the server is a Redis Cluster of
// three masters (redistest.StartCluster): `make test` runs the store's
// tests both ways.
func setup(t *testing.T) *testBundle {
	t.Helper()
	t.Parallel()
	if os.Getenv("ATF_TEST_REDIS") == "cluster" {
		return newBundle(t, redistest.StartCluster(t, 3))
	}
	return newBundle(t, redistest.Start(t))
}

// setupMiniredis is setup over miniredis, which `atf dev` may run on.
func setupMiniredis(t *testing.T) *testBundle {
	t.Helper()
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return newBundle(t, rdb)
}

func newBundle(t *testing.T, rdb redis.UniversalClient) *testBundle {
	clock := &testClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	return &testBundle{
		rdb:   rdb,
		clock: clock,
		ctx:   context.Background(),
		store: New(rdb, Options{Partitions: 4, Retention: time.Hour, Now: clock.Now, EnqueueTimeout: enqueueTmo}),
	}
}

func (b *testBundle) schedule(t *testing.T, nt NewTask) Task {
	t.Helper()
	if nt.Namespace == "" {
		nt.Namespace = ns
	}
	if nt.Lambda == "" {
		nt.Lambda = "echo"
	}
	task, dedup, err := b.store.Schedule(b.ctx, nt)
	if err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	if dedup {
		t.Fatalf("Schedule: unexpected dedup of %s", task.ID)
	}
	return task
}

func (b *testBundle) get(t *testing.T, id string) Task {
	t.Helper()
	task, err := b.store.GetTask(b.ctx, ns, id)
	if err != nil {
		t.Fatalf("GetTask(%s): %v", id, err)
	}
	return task
}

// claim pops nothing: it claims id directly, as the controller does after
// popping it, and fails the test unless the claim succeeds.
func (b *testBundle) claim(t *testing.T, id string) Task {
	t.Helper()
	got, err := b.store.Claim(b.ctx, []ClaimRequest{{TaskID: id, LambdaVersion: 1}}, claimTmo)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("Claim(%s): got %d tasks, want 1", id, len(got))
	}
	return got[0]
}

// running schedules a task and takes it to PROCESSING.
func (b *testBundle) running(t *testing.T, nt NewTask) Task {
	t.Helper()
	task := b.schedule(t, nt)
	task = b.claim(t, task.ID)
	b.beat(t, task, atfv1.Directive_DIRECTIVE_CONTINUE)
	return b.get(t, task.ID)
}

func (b *testBundle) beat(t *testing.T, task Task, want atfv1.Directive) {
	t.Helper()
	d, err := b.store.Heartbeat(b.ctx, []Beat{{TaskID: task.ID, Token: task.Token, Progress: -1}}, heartbeatTmo)
	if err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if d[0] != want {
		t.Fatalf("Heartbeat(%s): directive %s, want %s", task.ID, d[0], want)
	}
}

func (b *testBundle) trigger(t *testing.T, id string) (time.Time, bool) {
	t.Helper()
	p, _ := b.store.PartitionOf(id)
	score, err := b.rdb.ZScore(b.ctx, triggerKey(p), id).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return time.UnixMilli(int64(score)).UTC(), true
}

func (b *testBundle) wantTrigger(t *testing.T, id string, want time.Time) {
	t.Helper()
	got, ok := b.trigger(t, id)
	if !ok {
		t.Fatalf("task %s has no trigger, want %s", id, want)
	}
	if !got.Equal(want) {
		t.Fatalf("task %s trigger %s, want %s", id, got, want)
	}
}

func (b *testBundle) wantNoTrigger(t *testing.T, id string) {
	t.Helper()
	if got, ok := b.trigger(t, id); ok {
		t.Fatalf("task %s has trigger %s, want none", id, got)
	}
}

func (b *testBundle) queue(t *testing.T, priority int) []string {
	t.Helper()
	ids, err := b.rdb.LRange(b.ctx, b.store.QueueKey(ns, "echo", priority), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// processAll runs ProcessDue over every partition.
func (b *testBundle) processAll(t *testing.T) int {
	t.Helper()
	total := 0
	for p := range b.store.Partitions() {
		n, _, err := b.store.ProcessDue(b.ctx, p, timeouts, 100)
		if err != nil {
			t.Fatalf("ProcessDue(%d): %v", p, err)
		}
		total += n
	}
	return total
}

func wantState(t *testing.T, task Task, want atfv1.TaskState) {
	t.Helper()
	if task.State != want {
		t.Fatalf("task %s is %s, want %s", task.ID, task.State, want)
	}
}

func redisZ(at time.Time, member string) redis.Z {
	return redis.Z{Score: float64(at.UnixMilli()), Member: member}
}

// TestNewID: two hex digits of partition and a lowercase ULID, which
// PartitionOf reads back; ids of one millisecond sort in creation order.
func TestNewID(t *testing.T) {
	s := New(nil, Options{Partitions: 256})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	prev := ""
	for p := range 256 {
		id := s.newID(p, now)
		if got, err := s.PartitionOf(id); err != nil || got != p {
			t.Fatalf("PartitionOf(%q) = %d, %v; want %d", id, got, err, p)
		}
		if id[2:] <= prev {
			t.Fatalf("ids of one millisecond out of order: %q after %q", id[2:], prev)
		}
		prev = id[2:]
	}
}

func TestDueAt(t *testing.T) {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		task Task
		want time.Time
	}{
		{"scheduled ahead", Task{ExecuteAt: at, CreatedAt: at.Add(-time.Hour)}, at},
		{"due now", Task{ExecuteAt: at, CreatedAt: at}, at},
		{"scheduled for a time past", Task{ExecuteAt: at, CreatedAt: at.Add(time.Hour)}, at.Add(time.Hour)},
		{"retried after its time", Task{ExecuteAt: at, CreatedAt: at, RequeuedAt: at.Add(24 * time.Hour)}, at.Add(24 * time.Hour)},
		{"resumed before its time: never early", Task{ExecuteAt: at, CreatedAt: at.Add(-time.Hour), RequeuedAt: at.Add(-time.Minute)}, at},
		{"nothing known", Task{}, time.Time{}},
	} {
		if got := tc.task.DueAt(); !got.Equal(tc.want) {
			t.Errorf("%s: DueAt = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// workBlobV1 is a work field as version 1 of workBlob wrote it, before the
// lambda and max attempts moved into it.
func workBlobV1(priority int, executeAt, created time.Time, traceparent string, payload []byte) string {
	b := []byte{workVersion1}
	b = binary.AppendUvarint(b, uint64(priority))
	b = binary.AppendUvarint(b, uint64(executeAt.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(created.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(traceparent)))
	b = append(b, traceparent...)
	return string(append(b, payload...))
}

func TestWorkBlob(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6e6, time.UTC)
	for _, tc := range []struct {
		pri     int
		tp      string
		payload []byte
	}{{0, "", nil}, {9, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", []byte{0, 1, 0xff}}, {3, "", []byte("p")}} {
		blob := workBlob("a.lambda-1", 12, tc.pri, at, at.Add(-time.Hour), false, tc.tp, tc.payload)
		enq := workBlob("a.lambda-1", 12, tc.pri, at, at.Add(-time.Hour), true, tc.tp, tc.payload) // version 3
		old := workBlobV1(tc.pri, at, at.Add(-time.Hour), tc.tp, tc.payload)                       // as version 1 stored it
		if enq[0] != workVersionEnqueued || enq[1:] != blob[1:] {
			t.Errorf("version 3 is not version 2 but for its first byte: %q %q", enq, blob)
		}
		for _, b := range []string{blob, enq, old} {
			w, err := decodeWork(b)
			if w.enqueuedWhenCreated != (b == enq) {
				t.Errorf("enqueued when created %v for version %d", w.enqueuedWhenCreated, b[0])
			}
			task := Task{Lambda: "from-a-field", MaxAttempts: 3}
			w.fill(&task)
			if err != nil || task.Priority != tc.pri || !task.ExecuteAt.Equal(at) || !task.CreatedAt.Equal(at.Add(-time.Hour)) || task.TraceParent != tc.tp || string(task.Payload) != string(tc.payload) || (tc.payload == nil) != (task.Payload == nil) {
				t.Errorf("round trip of %+v: %+v %v", tc, task, err)
			}
			if b != old && (task.Lambda != "a.lambda-1" || task.MaxAttempts != 12) {
				t.Errorf("lambda and max attempts of %+v: %q %d", tc, task.Lambda, task.MaxAttempts)
			}
			if b == old && (task.Lambda != "from-a-field" || task.MaxAttempts != 3) {
				t.Errorf("a version 1 field changed the lambda and max attempts: %q %d", task.Lambda, task.MaxAttempts)
			}
			if got := traceParentOf(b); got != tc.tp {
				t.Errorf("traceParentOf = %q, want %q", got, tc.tp)
			}
			for n := 1; n < len(b)-len(tc.payload); n++ {
				if _, err := decodeWork(b[:n]); err == nil {
					t.Errorf("%d of %d bytes decoded without an error", n, len(b))
				}
			}
		}
	}
	for _, bad := range []string{"\x02\x003\x00\x00\x00\x00\x00", "\x02echo\x00x\x00\x00\x00\x00\x00"} {
		if _, err := decodeWork(bad); err == nil {
			t.Errorf("%q (no lambda, or max attempts not a number) decoded", bad)
		}
	}
	if got := traceParentOf("00-abc"); got != "00-abc" {
		t.Errorf("a plain traceparent: %q", got)
	}
	if _, err := decodeWork("00-abc"); err == nil {
		t.Error("a traceparent decoded as a work field")
	}
}
