package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/runtime/hostmod"
	"github.com/atfhq/atf/runtime/sandbox"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeController hands out the queued work once, then long-polls empty.
type fakeController struct{ workQueue }

// workQueue is a fake controller's work, handed out in order.
type workQueue struct {
	mu   sync.Mutex
	work []*atfv1.Work
}

// take hands out up to max of the work left.
func (q *workQueue) take(max int32) []*atfv1.Work {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(int(max), len(q.work))
	w := q.work[:n]
	q.work = q.work[n:]
	return w
}

func (c *fakeController) NextWork(ctx context.Context, req *atfv1.NextWorkRequest) (*atfv1.NextWorkResponse, error) {
	w := c.take(req.GetMaxTasks())
	if len(w) == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &atfv1.NextWorkResponse{Work: w}, nil
}

func (c *fakeController) GetModule(context.Context, *atfv1.GetModuleRequest) (*atfv1.GetModuleResponse, error) {
	return &atfv1.GetModuleResponse{}, nil
}

// fakeStatus answers heartbeats with directive (or fails them) and records
// results.
type fakeStatus struct {
	mu        sync.Mutex
	directive atfv1.Directive
	fail      bool
	beats     int
	firstBeat map[string]time.Time // when each task was first beaten
	results   []*atfv1.SetResultRequest
}

func (s *fakeStatus) Heartbeat(_ context.Context, req *atfv1.HeartbeatRequest) (*atfv1.HeartbeatResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beats++
	for _, b := range req.GetBeats() {
		if _, ok := s.firstBeat[b.GetTaskId()]; !ok && s.firstBeat != nil {
			s.firstBeat[b.GetTaskId()] = time.Now()
		}
	}
	if s.fail {
		return nil, errors.New("hsc unreachable")
	}
	ds := make([]atfv1.Directive, len(req.GetBeats()))
	for i := range ds {
		ds[i] = s.directive
	}
	return &atfv1.HeartbeatResponse{Directives: ds}, nil
}

func (s *fakeStatus) SetResult(_ context.Context, req *atfv1.SetResultRequest) (*atfv1.SetResultResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results = append(s.results, req)
	return &atfv1.SetResultResponse{}, nil
}

func (s *fakeStatus) snapshot() (int, []*atfv1.SetResultRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beats, append([]*atfv1.SetResultRequest(nil), s.results...)
}

// quickDuration is how long a quick blockingRunner says its runs took.
const quickDuration = 3*time.Second + 141592653

// blockingRunner runs until its context ends (like an infinite loop in a
// sandbox whose abort works), or succeeds at once when quick.
type blockingRunner struct{ quick bool }

func (r blockingRunner) Run(ctx context.Context, job sandbox.Job) sandbox.Result {
	if r.quick {
		return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: job.Payload, Duration: quickDuration}
	}
	<-ctx.Done()
	return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_CANCELLED}
}

func work(id string) *atfv1.Work {
	return &atfv1.Work{TaskId: id, FencingToken: 7, Payload: []byte(id), Attempt: 1}
}

type testBundle struct {
	ctl    *fakeController
	status *fakeStatus
	ex     *Executor
}

func setup(t *testing.T, runner Runner, ws ...*atfv1.Work) *testBundle {
	t.Helper()
	b := &testBundle{ctl: &fakeController{workQueue{work: ws}}, status: &fakeStatus{directive: atfv1.Directive_DIRECTIVE_CONTINUE}}
	b.ex = New(Config{Controller: b.ctl, Status: b.status, Runner: runner, Slots: 4, HeartbeatInterval: 10 * time.Millisecond, ShutdownGrace: 50 * time.Millisecond})
	return b
}

func runFor(t *testing.T, ex *Executor, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return ex.Run(ctx)
}

func TestRunReportsResults(t *testing.T) {
	t.Parallel()
	b := setup(t, blockingRunner{quick: true}, work("a"), work("b"), work("c"), work("d"), work("e"))
	if err := runFor(t, b.ex, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, results := b.status.snapshot()
	if len(results) != 5 {
		t.Fatalf("%d results, want 5", len(results))
	}
	for _, r := range results {
		if r.GetOutcome() != atfv1.Outcome_OUTCOME_SUCCESS || r.GetFencingToken() != 7 || string(r.GetOutput()) != r.GetTaskId() ||
			!proto.Equal(r.GetDuration(), durationpb.New(quickDuration)) {
			t.Errorf("result %v", r)
		}
	}
}

func TestCancelDirectiveAbortsAndReportsCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, blockingRunner{}, work("a"))
	b.status.directive = atfv1.Directive_DIRECTIVE_CANCEL
	if err := runFor(t, b.ex, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, results := b.status.snapshot()
	if len(results) != 1 || results[0].GetOutcome() != atfv1.Outcome_OUTCOME_CANCELLED {
		t.Fatalf("results %v, want one CANCELLED", results)
	}
}

func TestClaimLostAbortsAndReportsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, blockingRunner{}, work("a"))
	b.status.directive = atfv1.Directive_DIRECTIVE_CLAIM_LOST
	if err := runFor(t, b.ex, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if b.ex.Running() != 0 {
		t.Fatal("the task still runs after its claim was lost")
	}
	if _, results := b.status.snapshot(); len(results) != 0 {
		t.Fatalf("a lost claim must not report: %v", results)
	}
}

func TestThreeFailedHeartbeatsAbortEverythingAndStop(t *testing.T) {
	t.Parallel()
	b := setup(t, blockingRunner{}, work("a"), work("b"))
	b.status.fail = true
	start := time.Now()
	err := runFor(t, b.ex, 10*time.Second)
	if !errors.Is(err, ErrHeartbeatsFailed) {
		t.Fatalf("Run returned %v, want ErrHeartbeatsFailed", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s to give up", time.Since(start))
	}
	beats, results := b.status.snapshot()
	if beats < MaxFailedHeartbeats {
		t.Errorf("%d heartbeats, want at least %d before giving up", beats, MaxFailedHeartbeats)
	}
	if len(results) != 0 || b.ex.Running() != 0 {
		t.Fatalf("after giving up: %d results, %d running; want none", len(results), b.ex.Running())
	}
}

func TestShutdownAbortsAfterGraceWithoutReporting(t *testing.T) {
	t.Parallel()
	b := setup(t, blockingRunner{}, work("a"))
	if err := runFor(t, b.ex, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, results := b.status.snapshot(); len(results) != 0 {
		t.Fatalf("an aborted task must be left to the heartbeat timeout: %v", results)
	}
}

// recordingRunner succeeds at once and records when it ran each task.
type recordingRunner struct {
	mu  sync.Mutex
	ran map[string]time.Time
}

func (r *recordingRunner) Run(_ context.Context, job sandbox.Job) sandbox.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ran[string(job.Payload)] = time.Now()
	return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_SUCCESS}
}

// TestWaitsForExecuteAt: work handed out before its execute_at (the
// dispatch lead) starts at that time, not before; work without one, or
// past it, starts at once.
func TestWaitsForExecuteAt(t *testing.T) {
	t.Parallel()
	runner := &recordingRunner{ran: map[string]time.Time{}}
	at := time.Now().Add(400 * time.Millisecond)
	early, past := work("early"), work("past")
	early.ExecuteAt = timestamppb.New(at)
	past.ExecuteAt = timestamppb.New(time.Now().Add(-time.Hour))
	b := setup(t, runner, early, past, work("none"))
	start := time.Now()
	if err := runFor(t, b.ex, 800*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	runner.mu.Lock()
	defer runner.mu.Unlock()
	if got, ok := runner.ran["early"]; !ok || got.Before(at) {
		t.Fatalf("task ran at %v, its execute_at is %v: early", got.Sub(start), at.Sub(start))
	}
	for _, id := range []string{"past", "none"} {
		if got, ok := runner.ran[id]; !ok || !got.Before(at) {
			t.Fatalf("task %q ran at %v (ran: %v), want at once, not held like the early one (%v)", id, got.Sub(start), ok, at.Sub(start))
		}
	}
	if _, results := b.status.snapshot(); len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}
}

// TestShutdownWhileWaitingForExecuteAt: a task still waiting for its time
// when the executor stops never runs and reports nothing; its claim
// timeout gives it back, the attempt uncounted.
func TestShutdownWhileWaitingForExecuteAt(t *testing.T) {
	t.Parallel()
	runner := &recordingRunner{ran: map[string]time.Time{}}
	w := work("later")
	w.ExecuteAt = timestamppb.New(time.Now().Add(time.Minute))
	b := setup(t, runner, w)
	if err := runFor(t, b.ex, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	beats, results := b.status.snapshot()
	if len(runner.ran) != 0 || len(results) != 0 || beats != 0 || b.ex.Running() != 0 {
		t.Fatalf("ran %v, %d results, %d beats, %d running; want none", runner.ran, len(results), beats, b.ex.Running())
	}
}

// TestHeldTaskIsNotRunning: a task held for its execute_at holds a slot
// but is not counted as running (atf_executor_sandboxes_running) until its
// sandbox starts.
func TestHeldTaskIsNotRunning(t *testing.T) {
	t.Parallel()
	runner := &recordingRunner{ran: map[string]time.Time{}}
	w := work("later")
	at := time.Now().Add(500 * time.Millisecond)
	w.ExecuteAt = timestamppb.New(at)
	b := setup(t, runner, w)
	done := make(chan error, 1)
	go func() { done <- runFor(t, b.ex, time.Second) }()
	for b.ex.Held() == 0 && time.Now().Before(at) {
		time.Sleep(time.Millisecond)
	}
	if held, running := b.ex.Held(), b.ex.Running(); time.Now().Before(at) && (held != 1 || running != 0) {
		t.Fatalf("while held: %d held, %d running; want 1 and 0", held, running)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, results := b.status.snapshot(); len(results) != 1 || b.ex.Running() != 0 || b.ex.Held() != 0 {
		t.Fatalf("after: %d results, %d running, %d held; want 1, 0, 0", len(results), b.ex.Running(), b.ex.Held())
	}
}

// TestFirstBeatAfterEachStart: each task gets its first heartbeat
// FirstBeat after it starts, though the heartbeat interval is long and
// the heartbeat loop is woken only when a task's first beat comes before
// the loop's planned wake.
func TestFirstBeatAfterEachStart(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	later := work("later")
	later.ExecuteAt = timestamppb.New(begin.Add(300 * time.Millisecond))
	b := setup(t, blockingRunner{}, work("now"), later)
	b.status.firstBeat = map[string]time.Time{}
	const first = 50 * time.Millisecond
	b.ex = New(Config{Controller: b.ctl, Status: b.status, Runner: blockingRunner{}, Slots: 4,
		HeartbeatInterval: 5 * time.Second, FirstBeat: first, ShutdownGrace: 50 * time.Millisecond})
	if err := runFor(t, b.ex, 900*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	b.status.mu.Lock()
	defer b.status.mu.Unlock()
	for id, start := range map[string]time.Duration{"now": 0, "later": 300 * time.Millisecond} {
		at, ok := b.status.firstBeat[id]
		if !ok {
			t.Errorf("task %q never beaten in 900ms (interval 5s, first beat %s after its start at %s)", id, first, start)
			continue
		}
		if got := at.Sub(begin); got < start+first || got > start+first+400*time.Millisecond {
			t.Errorf("task %q first beaten at %s, want %s after its start at %s", id, got, first, start)
		}
	}
}

func TestHoldUntil(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ due, want time.Time }{
		{time.Time{}, now},
		{now.Add(-time.Second), now},
		{now.Add(20 * time.Millisecond), now.Add(20 * time.Millisecond)},
		{now.Add(MaxHold), now.Add(MaxHold)},
		{now.Add(time.Hour), now.Add(MaxHold)},
	} {
		if got := holdUntil(now, tc.due); !got.Equal(tc.want) {
			t.Errorf("holdUntil(due %v) = %v, want %v", tc.due.Sub(now), got.Sub(now), tc.want.Sub(now))
		}
	}
}

// slowResults is a fakeStatus whose SetResult waits for release.
type slowResults struct {
	*fakeStatus
	release chan struct{}
}

func (s slowResults) SetResult(ctx context.Context, req *atfv1.SetResultRequest) (*atfv1.SetResultResponse, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.fakeStatus.SetResult(ctx, req)
}

// TestSlotFreedBeforeTheReport: a task's slot is free once its sandbox is
// done, while its result is still on its way: with one slot, a second
// task runs before the first's SetResult is answered, and the task
// waiting for its answer keeps beating (its claim must not lapse).
func TestSlotFreedBeforeTheReport(t *testing.T) {
	t.Parallel()
	runner := &recordingRunner{ran: map[string]time.Time{}}
	st := slowResults{fakeStatus: &fakeStatus{directive: atfv1.Directive_DIRECTIVE_CONTINUE, firstBeat: map[string]time.Time{}}, release: make(chan struct{})}
	ex := New(Config{Controller: &fakeController{workQueue{work: []*atfv1.Work{work("a"), work("b")}}}, Status: st, Runner: runner,
		Slots: 1, HeartbeatInterval: 10 * time.Millisecond, FirstBeat: 5 * time.Millisecond, ShutdownGrace: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ex.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runner.mu.Lock()
		n := len(runner.ran)
		runner.mu.Unlock()
		st.mu.Lock()
		_, beaten := st.firstBeat["a"]
		st.mu.Unlock()
		if n == 2 && beaten {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with a's result unanswered: %d tasks ran, a beaten: %v (want 2, true)", n, beaten)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if running, held := ex.Running(), ex.Held(); running != 0 || held != 0 {
		t.Errorf("while results wait: Running %d, Held %d; want 0, 0", running, held)
	}
	close(st.release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, results := st.snapshot(); len(results) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("results not recorded after release")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// varsRunner succeeds at once and records the environment of each job.
type varsRunner struct {
	mu   sync.Mutex
	vars []sandbox.Vars
	env  []map[string]string
}

func (r *varsRunner) Run(ctx context.Context, job sandbox.Job) sandbox.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.vars, r.env = append(r.vars, job.Vars), append(r.env, job.Env)
	return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_SUCCESS}
}

// TestExecuteJobEnv: the module's environment is the task's id, lambda,
// attempt and stored trace context, given as Job.Vars (the sandbox builds
// a map of them only when the module asks).
func TestExecuteJobEnv(t *testing.T) {
	w := work("t1")
	w.Lambda, w.Attempt = "resize", 3
	w.Traceparent = "00-4bf92f3577b34a0e9ff1e7ad0e0d3c99-00f067aa0ba902b7-01"
	runner := &varsRunner{}
	b := setup(t, runner, w)
	if err := runFor(t, b.ex, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	runner.mu.Lock()
	defer runner.mu.Unlock()
	want := sandbox.Vars{TaskID: "t1", Lambda: "resize", Attempt: "3", TraceParent: w.Traceparent}
	if len(runner.vars) != 1 || runner.vars[0] != want || runner.env[0] != nil {
		t.Fatalf("jobs' Vars %+v and Env %v, want one with Vars %+v and no Env", runner.vars, runner.env, want)
	}
}

// recordingHost answers the HostService calls and records their callers.
type recordingHost struct {
	mu      sync.Mutex
	callers []*atfv1.Caller
}

func (h *recordingHost) record(c *atfv1.Caller) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.callers = append(h.callers, proto.Clone(c).(*atfv1.Caller))
}

func (h *recordingHost) GetValue(_ context.Context, req *atfv1.GetValueRequest) (*atfv1.GetValueResponse, error) {
	h.record(req.GetCaller())
	return &atfv1.GetValueResponse{Value: []byte("v")}, nil
}

func (h *recordingHost) SetValue(_ context.Context, req *atfv1.SetValueRequest) (*atfv1.SetValueResponse, error) {
	h.record(req.GetCaller())
	return &atfv1.SetValueResponse{}, nil
}

func (h *recordingHost) DeleteValue(_ context.Context, req *atfv1.DeleteValueRequest) (*atfv1.DeleteValueResponse, error) {
	h.record(req.GetCaller())
	return &atfv1.DeleteValueResponse{}, nil
}

func (h *recordingHost) ScheduleFollowUp(_ context.Context, req *atfv1.ScheduleFollowUpRequest) (*atfv1.ScheduleFollowUpResponse, error) {
	h.record(req.GetCaller())
	return &atfv1.ScheduleFollowUpResponse{TaskId: "follow-up"}, nil
}

// servicesRunner calls the atf_v1 services of each job's Host as a
// module would, and fails the task if any call fails.
type servicesRunner struct{}

func (servicesRunner) Run(ctx context.Context, job sandbox.Job) sandbox.Result {
	s := job.Host.(*hostmod.Task).Services
	fail := func(err error) sandbox.Result {
		return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_FATAL, Error: &atfv1.TaskError{Message: err.Error()}}
	}
	if v, ok, err := s.KVGet(ctx, "k"); err != nil || !ok || string(v) != "v" {
		return fail(fmt.Errorf("KVGet: %q %v %v", v, ok, err))
	}
	if err := s.KVSet(ctx, "k", []byte("v"), 0); err != nil {
		return fail(err)
	}
	if id, err := s.Schedule(ctx, hostmod.FollowUp{Lambda: "next"}); err != nil || id != "follow-up" {
		return fail(fmt.Errorf("Schedule: %q %v", id, err))
	}
	return sandbox.Result{Outcome: atfv1.Outcome_OUTCOME_SUCCESS}
}

// TestExecuteHostServices: a module's kv_* and schedule calls reach the
// Host as calls of its task's claim (id, fencing token, namespace), each
// task its own though the services live in the task's bookkeeping.
func TestExecuteHostServices(t *testing.T) {
	w1, w2 := work("t1"), work("t2")
	w1.Namespace, w2.Namespace, w2.FencingToken = "ns1", "ns2", 9
	host := &recordingHost{}
	b := setup(t, servicesRunner{}, w1, w2)
	b.ex.cfg.Host = host
	if err := runFor(t, b.ex, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_, results := b.status.snapshot()
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	for _, r := range results {
		if r.GetOutcome() != atfv1.Outcome_OUTCOME_SUCCESS {
			t.Errorf("task %s: %s %s", r.GetTaskId(), r.GetOutcome(), r.GetError().GetMessage())
		}
	}
	host.mu.Lock()
	defer host.mu.Unlock()
	got := map[string]int{}
	for _, c := range host.callers {
		switch {
		case proto.Equal(c, &atfv1.Caller{TaskId: "t1", FencingToken: 7, Namespace: "ns1"}):
			got["t1"]++
		case proto.Equal(c, &atfv1.Caller{TaskId: "t2", FencingToken: 9, Namespace: "ns2"}):
			got["t2"]++
		default:
			t.Errorf("a call from %v", c)
		}
	}
	if got["t1"] != 3 || got["t2"] != 3 {
		t.Errorf("calls per task %v, want 3 each", got)
	}
}
