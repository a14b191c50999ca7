// Package executor runs tasks. An executor asks the controller for work
// (NextWork), runs each task's module in a sandbox slot, heartbeats every
// running task to the HSC and reports each outcome with SetResult.
//
// It aborts a sandbox the moment a heartbeat answers "cancel" or "claim
// lost", and after three consecutive failed heartbeats it aborts everything
// and stops: by then its leases may have passed to another executor, and
// ATF promises that no task runs twice at once (so the heartbeat timeout
// must exceed three intervals).
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/platform/tracectx"
	"github.com/atfhq/atf/runtime/hostmod"
	"github.com/atfhq/atf/runtime/sandbox"
)

// Controller is the controller as the executor calls it;
// atfv1connect.ControllerServiceClient is one.
type Controller interface {
	NextWork(ctx context.Context, req *atfv1.NextWorkRequest) (*atfv1.NextWorkResponse, error)
	GetModule(ctx context.Context, req *atfv1.GetModuleRequest) (*atfv1.GetModuleResponse, error)
}

// Status is the HSC as the executor calls it;
// atfv1connect.HeartbeatServiceClient is one.
type Status interface {
	Heartbeat(ctx context.Context, req *atfv1.HeartbeatRequest) (*atfv1.HeartbeatResponse, error)
	SetResult(ctx context.Context, req *atfv1.SetResultRequest) (*atfv1.SetResultResponse, error)
}

// Runner runs one job in a sandbox; *sandbox.Engine is one.
type Runner interface {
	Run(ctx context.Context, job sandbox.Job) sandbox.Result
}

// Defaults of Config.
const (
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultPollWait          = 20 * time.Second
	DefaultShutdownGrace     = 10 * time.Second
	// MaxFailedHeartbeats is ATF's rule: after this many heartbeats in a row
	// fail, the executor aborts everything it runs and stops.
	MaxFailedHeartbeats = 3
	// DefaultFirstBeat is how long a task runs before its first heartbeat
	// (which moves it CLAIMED -> PROCESSING). A task that ends sooner never
	// heartbeats: its claim covers it, its result records when it started,
	// and it costs the store one round trip less.
	DefaultFirstBeat = 100 * time.Millisecond
	// maxFetchers bounds the NextWork long-polls an executor keeps open.
	// Two keep one waiting while the other is busy with its round trips;
	// more cost more than they hide: in BenchmarkScheduledLateness (one
	// executor, 64 slots, 2,000 tasks/s) the median p99 lateness was
	// 9.8 ms over 17 runs with two and 11.2 ms over 9 with four (both
	// ranging 5-18 ms on a shared 2-core box); sixteen gave 20-27 ms.
	maxFetchers = 2
	// MaxHold bounds how long a task handed out before its execute_at
	// (the platform's dispatch lead, at most 1s) is held before it starts.
	// Longer means this executor's clock is behind the store's; the task
	// then starts after MaxHold rather than holding its slot until the
	// clocks agree. Executors' clocks are expected to be synchronized (NTP).
	MaxHold = 2 * time.Second
)

// Config configures an Executor.
type Config struct {
	Controller Controller
	Status     Status
	Runner     Runner
	Logger     *slog.Logger
	// ID names the executor in logs and requests. Default host-pid.
	ID string
	// Slots is how many tasks run at once. Default 8.
	Slots int
	// HeartbeatInterval. Default 3s.
	HeartbeatInterval time.Duration
	// FirstBeat. Default 100ms, at most HeartbeatInterval.
	FirstBeat time.Duration
	// PollWait is how long one NextWork long-poll may wait. Default 20s.
	PollWait time.Duration
	// ExecutionLog, when set, gets one line as each execution starts and
	// ends: "start|end <task id> <attempt> <fencing token> <unix ns>
	// [outcome]". Audits (and the no-concurrent-execution test) read it.
	ExecutionLog io.Writer
	// ShutdownGrace is how long running tasks may finish after Run's
	// context ends before they are aborted (and left to the heartbeat
	// timeout to re-run elsewhere). Default 10s.
	ShutdownGrace time.Duration
	// Host backs the atf_v1 functions kv_* and schedule (host.go); nil:
	// they answer "unavailable".
	Host Host
	// CancelGrace: see DefaultCancelGrace.
	CancelGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Slots <= 0 {
		c.Slots = 8
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.FirstBeat <= 0 {
		c.FirstBeat = DefaultFirstBeat
	}
	c.FirstBeat = min(c.FirstBeat, c.HeartbeatInterval)
	if c.PollWait <= 0 {
		c.PollWait = DefaultPollWait
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	if c.CancelGrace <= 0 {
		c.CancelGrace = DefaultCancelGrace
	}
	return c
}

// Reasons a running task's context is cancelled.
var (
	errCancelled = errors.New("task cancelled")
	errClaimLost = errors.New("claim lost")
	errShutdown  = errors.New("executor shutting down")
	// ErrHeartbeatsFailed is returned by Run when MaxFailedHeartbeats
	// heartbeats in a row failed.
	ErrHeartbeatsFailed = errors.New("heartbeats failed")
)

// Executor runs tasks.
type Executor struct {
	cfg Config

	auditMu sync.Mutex // serializes ExecutionLog lines

	mu        sync.Mutex
	running   runningList   // registered tasks: held for their execute_at, or started
	started   int           // of running, those whose sandbox runs
	reporting int           // of running, those whose result is being reported
	planned   time.Time     // when the heartbeat loop wakes next; zero: not known
	kick      chan struct{} // asks for a heartbeat now (a task's first beat is due before planned)

	results *resultSender
}

type running struct {
	work      *atfv1.Work
	cancel    context.CancelCauseFunc
	span      trace.Span   // the execute span (heartbeats are its events); guarded by Executor.mu
	nextBeat  time.Time    // guarded by Executor.mu
	started   bool         // its sandbox runs (not held); guarded by Executor.mu
	reporting bool         // its sandbox is done, its result on its way; guarded by Executor.mu
	guest     guestState   // in place: one allocation less per task
	host      hostmod.Task // likewise (hostTask), and its Services:
	services  hostServices
	caller    atfv1.Caller
	// prev and next link it in Executor.running; guarded by Executor.mu.
	prev, next *running
}

// runningList is the registered tasks, a list threaded through them: no
// map to hash each task's id into and out of (nothing looks a task up by
// id), no allocation. Guarded by Executor.mu.
type runningList struct {
	head *running
	n    int
}

func (l *runningList) add(r *running) {
	r.prev, r.next = nil, l.head
	if l.head != nil {
		l.head.prev = r
	}
	l.head = r
	l.n++
}

func (l *runningList) remove(r *running) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		l.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	}
	r.prev, r.next = nil, nil
	l.n--
}

// New returns an Executor.
func New(cfg Config) *Executor {
	cfg = cfg.withDefaults()
	return &Executor{
		cfg:     cfg,
		kick:    make(chan struct{}, 1),
		results: newResultSender(cfg.Status),
	}
}

// Run fetches and runs tasks until ctx ends (then lets running tasks finish
// for ShutdownGrace) or heartbeats fail MaxFailedHeartbeats times in a row.
func (e *Executor) Run(ctx context.Context) error {
	slots := make(chan struct{}, e.cfg.Slots)
	var tasks sync.WaitGroup
	hbCtx, stopHeartbeats := context.WithCancel(context.Background())
	defer stopHeartbeats()
	hbDone := make(chan error, 1)
	fetchCtx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	go func() {
		err := e.heartbeatLoop(hbCtx)
		if err != nil {
			stopFetching()
		}
		hbDone <- err
	}()

	// Several fetchers, each asking for at most its share of the slots, so
	// that several long-polls wait at once: a task queued while one
	// fetcher is busy with its round trips is taken by another at once.
	//
	// Tasks run on a pool of goroutines rather than a new goroutine each:
	// a task's goroutine needs a deep stack (wazero, the RPC clients), and
	// a new one grows it again, copying, for every task. A task frees its
	// slot once its sandbox is done, before its result is reported: slots
	// bound sandboxes, and as many results again may be on their way (a
	// slot held through the report's round trip idled for most of a short
	// task's time). So there are two workers per slot.
	work := make(chan *atfv1.Work)
	var workers sync.WaitGroup
	defer func() { close(work); workers.Wait() }()
	for range 2 * e.cfg.Slots {
		workers.Go(func() {
			free := func() { <-slots }
			for w := range work {
				e.execute(w, free)
				tasks.Done()
			}
		})
	}
	var fetchers sync.WaitGroup
	n := min(e.cfg.Slots, maxFetchers)
	share := (e.cfg.Slots + n - 1) / n
	for range n {
		fetchers.Go(func() { e.fetchLoop(fetchCtx, slots, share, work, &tasks) })
	}
	fetchers.Wait()

	// Soft stop: running tasks get ShutdownGrace to finish, then are aborted.
	finished := make(chan struct{})
	go func() { tasks.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(e.cfg.ShutdownGrace):
		e.abortAll(errShutdown)
		<-finished
	case err := <-hbDone:
		e.abortAll(err)
		<-finished
		return err
	}
	stopHeartbeats()
	if err := <-hbDone; err != nil {
		return err
	}
	return nil
}

func (e *Executor) fetchLoop(ctx context.Context, slots chan struct{}, share int, work chan<- *atfv1.Work, tasks *sync.WaitGroup) {
	backoff := 100 * time.Millisecond
	wait := durationpb.New(e.cfg.PollWait) // the same for every call of this fetcher
	for ctx.Err() == nil {
		// Wait for one free slot, then ask for as many as are free, up to
		// this fetcher's share.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		free := 1
		for free < share {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		res, err := e.cfg.Controller.NextWork(ctx, &atfv1.NextWorkRequest{
			ExecutorId: e.cfg.ID,
			MaxTasks:   int32(free),
			Wait:       wait,
		})
		if err != nil {
			for range free {
				<-slots
			}
			if ctx.Err() != nil {
				return
			}
			e.cfg.Logger.Warn("next work failed; retrying", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for i, w := range res.GetWork() {
			if i >= free { // never more than asked; guard against a bad controller
				break
			}
			tasks.Add(1)
			work <- w // a worker is free: this task holds one of the slots
		}
		for range free - min(free, len(res.GetWork())) {
			<-slots
		}
	}
}

// execute runs one task and reports its outcome; it calls free (once)
// when the task no longer needs its slot: its sandbox is done, or it never
// started.
func (e *Executor) execute(w *atfv1.Work, free func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	freed := false
	defer func() {
		if !freed {
			free()
		}
	}()
	// A task handed out within the dispatch lead waits for its time here,
	// registered (so that a shutdown or a heartbeat failure aborts the
	// wait) but not yet beating: its first beat is planned from its start.
	var due time.Time
	if xa := w.GetExecuteAt(); xa != nil {
		due = xa.AsTime()
	}
	now := time.Now()
	start := holdUntil(now, due)
	r := &running{work: w, cancel: cancel, span: noSpan, nextBeat: start.Add(e.cfg.FirstBeat)}
	guest := r.guest.init()
	e.mu.Lock()
	e.running.add(r)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running.remove(r)
		if r.started {
			e.started--
		}
		if r.reporting {
			e.reporting--
		}
		e.mu.Unlock()
	}()
	if !sleepUntil(ctx, now, start) {
		e.logTask(ctx, slog.LevelWarn, w, "task aborted before its execute_at", "reason", context.Cause(ctx))
		return // never started: its claim timeout re-enqueues it, the attempt uncounted
	}
	late := time.Duration(-1)
	if w.GetAttempt() == 1 && !due.IsZero() {
		late = time.Since(due)
	}
	ctx, span := startExecute(ctx, e.cfg.ID, w, late)
	e.mu.Lock()
	r.span, r.started = span, true
	e.started++
	// The heartbeat loop plans this task's first beat when it wakes; it
	// need only wake now if that is later than the beat. Under load it
	// rarely is: a task starting now is due after the ones before it, and
	// waking the loop for each start had it scan every running task.
	early := e.planned.IsZero() || r.nextBeat.Before(e.planned)
	e.mu.Unlock()
	if early {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}

	e.audit("start", w, "")
	host := e.hostTask(r)
	res := e.cfg.Runner.Run(ctx, sandbox.Job{
		SHA256: w.GetModuleSha256(),
		Load: func(ctx context.Context) ([]byte, error) {
			m, err := e.cfg.Controller.GetModule(ctx, &atfv1.GetModuleRequest{Sha256: w.GetModuleSha256()})
			if err != nil {
				return nil, fmt.Errorf("fetch module %s: %w", w.GetModuleSha256(), err)
			}
			return m.GetWasm(), nil
		},
		Payload: w.GetPayload(),
		// Vars rather than Env: the sandbox builds the map only when the
		// module asks (most reactor tasks never do).
		Vars: sandbox.Vars{
			TaskID:      w.GetTaskId(),
			Lambda:      w.GetLambda(),
			Attempt:     strconv.Itoa(int(w.GetAttempt())),
			TraceParent: guestTraceParent(span, w),
		},
		Timeout:        w.GetTimeout().AsDuration(),
		MemoryMB:       int(w.GetMemoryMb()),
		MaxOutputBytes: int(w.GetMaxOutputBytes()),
		MaxLogBytes:    int(w.GetMaxLogBytes()),
		Host:           host,
	})
	host.Finish()
	// The sandbox is done: its slot is free while the result is reported.
	// The task stays registered (beating) until the report is answered.
	e.mu.Lock()
	r.started, r.reporting = false, true
	e.started--
	e.reporting++
	e.mu.Unlock()
	freed = true
	free()
	if guest.cancelRequested.Load() { // it stopped by itself within CancelGrace
		cancel(errCancelled)
	}
	if e.cfg.ExecutionLog != nil { // the outcome's name is looked up for nothing otherwise
		e.audit("end", w, res.Outcome.String())
	}
	cause := context.Cause(ctx)
	defer func() { endExecute(ctx, span, w, res, cause) }()
	switch {
	case errors.Is(cause, errClaimLost), errors.Is(cause, errShutdown), errors.Is(cause, ErrHeartbeatsFailed):
		// Another claim owns the task, or we cannot tell: report nothing and
		// let the store's timeouts decide.
		e.logTask(ctx, slog.LevelWarn, w, "task aborted", "reason", cause)
		return
	case errors.Is(cause, errCancelled):
		res.Outcome = atfv1.Outcome_OUTCOME_CANCELLED
	}
	if res.Error != nil {
		res.Error.Attempt = w.GetAttempt()
	}
	e.report(ctx, w, res, attemptLogs(w.GetAttempt(), res.Outcome, guest.logs.String(), res.Stderr))
}

// sleepUntil waits until t (at once when t is past or zero) and reports
// whether it got there before ctx ended. now is the time the caller read
// before (the wait, counted from it, ends no earlier than t): a task that
// is not held reads the clock once.
func sleepUntil(ctx context.Context, now, t time.Time) bool {
	d := t.Sub(now)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// holdUntil is when a task due at due (zero: none) handed out at now
// starts: at due, never before, but after at most MaxHold (a task far
// ahead of this executor's clock means the clock is behind the store's).
func holdUntil(now, due time.Time) time.Time {
	switch {
	case !due.After(now):
		return now
	case due.Sub(now) > MaxHold:
		return now.Add(MaxHold)
	}
	return due
}

// logTask logs about one execution; the task's attributes are added only
// when the level is enabled (a logger With them for every task cost more
// than the rest of the executor's bookkeeping).
func (e *Executor) logTask(ctx context.Context, level slog.Level, w *atfv1.Work, msg string, args ...any) {
	if !e.cfg.Logger.Enabled(ctx, level) {
		return
	}
	e.cfg.Logger.Log(ctx, level, msg, append([]any{"task", w.GetTaskId(), "lambda", w.GetLambda(), "attempt", w.GetAttempt()}, args...)...)
}

// audit writes one ExecutionLog line.
func (e *Executor) audit(event string, w *atfv1.Work, outcome string) {
	if e.cfg.ExecutionLog == nil {
		return
	}
	e.auditMu.Lock()
	defer e.auditMu.Unlock()
	fmt.Fprintf(e.cfg.ExecutionLog, "%s %s %d %d %d %s\n", event, w.GetTaskId(), w.GetAttempt(), w.GetFencingToken(), time.Now().UnixNano(), outcome)
}

// report sends SetResult (with the results of tasks finishing at the same
// time, in one SetResults call when the Status takes those), retrying
// transient failures for a while: a lost result costs a whole re-execution
// after the heartbeat timeout.
func (e *Executor) report(ctx context.Context, w *atfv1.Work, res sandbox.Result, logs string) {
	// ctx carries the execute span, the parent of SetResult's; it may be
	// cancelled (a cancelled task still reports).
	span := trace.SpanFromContext(ctx) // before WithoutCancel, whose Value allocates
	ctx = context.WithoutCancel(ctx)
	msg := &resultMessage{}
	msg.duration = durationpb.Duration{Seconds: int64(res.Duration / time.Second), Nanos: int32(res.Duration % time.Second)}
	req := &msg.req
	msg.call.req = req
	*req = atfv1.SetResultRequest{
		TaskId:          w.GetTaskId(),
		Namespace:       w.GetNamespace(),
		Slot:            w.GetSlot(),
		FencingToken:    w.GetFencingToken(),
		Outcome:         res.Outcome,
		Output:          res.Output,
		OutputTruncated: res.OutputTruncated,
		Error:           res.Error,
		Duration:        &msg.duration,
		Logs:            logs,
	}
	if span.IsRecording() {
		req.ExecutionTraceparent = tracectx.Format(span.SpanContext())
	}
	delay := 50 * time.Millisecond
	for try := 1; ; try++ {
		e.results.set(ctx, &msg.call)
		r, err := msg.call.res, msg.call.err
		if err == nil {
			if e.cfg.Logger.Enabled(ctx, slog.LevelDebug) { // its arguments would be built for nothing
				e.logTask(ctx, slog.LevelDebug, w, "task finished", "outcome", res.Outcome, "state", r.GetState(), "duration", res.Duration)
			}
			return
		}
		if code := connect.CodeOf(err); code == connect.CodeFailedPrecondition || code == connect.CodeNotFound || code == connect.CodeInvalidArgument || try == 8 {
			e.logTask(ctx, slog.LevelWarn, w, "result refused", "err", err)
			return
		}
		time.Sleep(delay)
		delay = min(delay*2, 2*time.Second)
	}
}

// resultMessage is a SetResult request with its duration and its call
// (its place in a batch, and its answer): one allocation for all three.
type resultMessage struct {
	req      atfv1.SetResultRequest
	duration durationpb.Duration
	call     resultCall
}

// heartbeatLoop beats each running task FirstBeat after it starts and
// every HeartbeatInterval after that, batching the beats that fall due
// together, until ctx ends. It returns ErrHeartbeatsFailed once
// heartbeats have failed MaxFailedHeartbeats times in a row over at least
// MaxFailedHeartbeats-1 intervals (ATF's three missed heartbeats; a burst
// of failures within one moment is one missed heartbeat, not three).
func (e *Executor) heartbeatLoop(ctx context.Context) error {
	timer := time.NewTimer(e.cfg.HeartbeatInterval)
	defer timer.Stop()
	failures := 0
	var streak time.Time // when the failures in a row began
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-e.kick:
		}
		next, err := e.beat(ctx)
		timer.Reset(max(time.Until(next), 0))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			if failures == 1 {
				streak = time.Now()
			}
			telemetry.HeartbeatFailed(ctx)
			e.cfg.Logger.Warn("heartbeat failed", "err", err, "failures_in_a_row", failures)
			if failures >= MaxFailedHeartbeats && time.Since(streak) >= time.Duration(MaxFailedHeartbeats-1)*e.cfg.HeartbeatInterval-e.cfg.HeartbeatInterval/10 {
				return fmt.Errorf("%w: %d in a row, last: %w", ErrHeartbeatsFailed, failures, err)
			}
			continue
		}
		failures = 0
	}
}

// beat sends the beats due now and returns when the next one is due. A
// failed batch is due again after HeartbeatInterval.
func (e *Executor) beat(ctx context.Context) (time.Time, error) {
	now := time.Now()
	next := now.Add(e.cfg.HeartbeatInterval)
	e.mu.Lock()
	var (
		rs    []*running
		beats []*atfv1.Beat
		spans []trace.Span
	)
	for r := e.running.head; r != nil; r = r.next {
		if r.nextBeat.After(now) {
			if r.nextBeat.Before(next) {
				next = r.nextBeat
			}
			continue
		}
		r.nextBeat = now.Add(e.cfg.HeartbeatInterval)
		rs = append(rs, r)
		spans = append(spans, r.span)
		beats = append(beats, &atfv1.Beat{TaskId: r.work.GetTaskId(), FencingToken: r.work.GetFencingToken(), Progress: r.guest.progress.Load()})
	}
	e.planned = next // the loop sleeps until then (heartbeatLoop)
	e.mu.Unlock()
	if len(beats) == 0 {
		return next, nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.HeartbeatInterval)
	defer cancel()
	res, err := e.cfg.Status.Heartbeat(ctx, &atfv1.HeartbeatRequest{ExecutorId: e.cfg.ID, Beats: beats})
	if err != nil {
		return next, err
	}
	for i, d := range res.GetDirectives() {
		if i >= len(rs) {
			break
		}
		heartbeatEvent(spans[i], d)
		switch d {
		case atfv1.Directive_DIRECTIVE_CANCEL:
			e.cancelTask(rs[i])
		case atfv1.Directive_DIRECTIVE_CLAIM_LOST:
			rs[i].cancel(errClaimLost)
		}
	}
	return next, nil
}

func (e *Executor) abortAll(cause error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for r := e.running.head; r != nil; r = r.next {
		r.cancel(cause)
	}
}

// Running reports how many tasks run now: their sandbox started and not
// done — not those held until their execute_at (Held), nor those whose
// result is on its way.
func (e *Executor) Running() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started
}

// Held reports how many claimed tasks wait for their execute_at (handed
// out within the dispatch lead). Each holds an execution slot.
func (e *Executor) Held() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running.n - e.started - e.reporting
}
