// Package controller is ATF's controller: it pulls ready task ids from the
// queues of the lambdas it serves, claims each task (ENQUEUED -> CLAIMED
// with a fresh fencing token) and hands the claimed work to executors
// through the NextWork long-poll.
//
// Queues are read highest priority first, so within a lambda a ready
// higher-priority task is always handed out before a lower one; the order
// of lambdas at one priority rotates on every poll so that no lambda's
// backlog shadows another's.
package controller

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// Store is what the controller needs of the task store.
type Store interface {
	ListLambdas(ctx context.Context, ns string) ([]store.Lambda, error)
	QueueKey(ns, lambda string, priority int) string
	RunningKey(ns, lambda string) string
	ControlKey(owner string) string
	Pop(ctx context.Context, lambdas []store.PopLambda, max int, wait time.Duration, control string) ([]store.Popped, error)
	Interrupt(ctx context.Context, control string, n int) error
	Release(ctx context.Context, running string, ids ...string) error
	Claim(ctx context.Context, claims []store.ClaimRequest, claimTimeout time.Duration) ([]store.Task, error)
	GetModule(ctx context.Context, sha256 string) ([]byte, error)
	LambdaChanges(ctx context.Context) <-chan struct{}
}

// Defaults of Config.
const (
	DefaultClaimTimeout     = 30 * time.Second
	DefaultHeartbeatTimeout = 10 * time.Second
	DefaultLambdaRefresh    = 10 * time.Second
	DefaultMaxWait          = 30 * time.Second
	// popSlice bounds one blocking pop. A deploy ends blocked pops at once
	// (LambdaChanges, Interrupt); the slice only bounds how long a lost
	// change announcement can hide a new lambda.
	popSlice = 10 * time.Second
)

// Config configures a Controller.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// Namespaces served. Default: ["default"].
	Namespaces []string
	// ClaimTimeout: a claimed task not heartbeating for this long goes back
	// to its queue. Default 30s.
	ClaimTimeout time.Duration
	// HeartbeatTimeout, with ClaimTimeout and a lambda's timeout, bounds
	// how long a task holds a concurrency slot nobody releases. Default 10s.
	HeartbeatTimeout time.Duration
	// LambdaRefresh: how often the set of lambdas (and so of queues) is
	// read again when no change is announced. Default 10s.
	LambdaRefresh time.Duration
	// ID names this controller's control list. Default: random.
	ID string
}

func (c Config) withDefaults() Config {
	if len(c.Namespaces) == 0 {
		c.Namespaces = []string{store.DefaultNamespace}
	}
	if c.ClaimTimeout <= 0 {
		c.ClaimTimeout = DefaultClaimTimeout
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.LambdaRefresh <= 0 {
		c.LambdaRefresh = DefaultLambdaRefresh
	}
	if c.ID == "" {
		c.ID = rand.Text()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Controller implements atfv1connect.ControllerServiceHandler.
type Controller struct {
	cfg Config

	control string // this controller's control list

	mu        sync.Mutex
	lambdas   []served           // in a rotating order
	queueOf   map[string]*served // queue key -> its lambda
	refreshed time.Time
	rotation  int
	polls     int           // pops blocked now
	changed   chan struct{} // closed (and replaced) when lambdas change
	stopped   chan struct{} // closed when Run returns
	changes   <-chan struct{}
}

// served is a lambda as the controller serves it.
type served struct {
	lambda store.Lambda
	pop    store.PopLambda
}

// New returns a Controller.
func New(cfg Config) *Controller {
	cfg = cfg.withDefaults()
	return &Controller{cfg: cfg, control: cfg.Store.ControlKey(cfg.ID), changed: make(chan struct{}), stopped: make(chan struct{})}
}

// Run follows lambda changes until ctx ends: each one makes the next poll
// read the lambdas again and ends the pops blocked now, so that a task of
// a lambda deployed a moment ago is not left waiting for a poll to end.
//
// Call Subscribe before serving when lambdas may be deployed at once;
// otherwise Run subscribes itself.
func (c *Controller) Run(ctx context.Context) error {
	defer c.stop()
	c.mu.Lock()
	changes := c.changes
	c.mu.Unlock()
	if changes == nil {
		changes = c.cfg.Store.LambdaChanges(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil
			}
		}
		c.mu.Lock()
		c.refreshed = time.Time{}
		blocked := c.polls
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err := c.cfg.Store.Interrupt(ctx, c.control, blocked); err != nil {
			c.cfg.Logger.Warn("interrupting blocked pops failed; they end within their slice", "err", err)
		}
	}
}

// stop ends the pops blocked now, and makes NextWork answer at once from
// now on: a shutdown need not wait out their slices (popSlice) — Redis
// does not end a blocked pop because its caller went away.
func (c *Controller) stop() {
	c.mu.Lock()
	blocked := c.polls
	select {
	case <-c.stopped:
	default:
		close(c.stopped)
	}
	c.mu.Unlock()
	if blocked == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.cfg.Store.Interrupt(ctx, c.control, blocked); err != nil {
		c.cfg.Logger.Warn("interrupting blocked pops at shutdown failed; they end within their slice", "err", err)
	}
}

// NextWork long-polls for up to req.MaxTasks claimed tasks. Once Run has
// returned (a shutdown), it answers with no work at once.
func (c *Controller) NextWork(ctx context.Context, req *atfv1.NextWorkRequest) (*atfv1.NextWorkResponse, error) {
	max := int(req.GetMaxTasks())
	if max <= 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("max_tasks must be at least 1"))
	}
	wait := req.GetWait().AsDuration()
	if wait <= 0 || wait > DefaultMaxWait {
		wait = DefaultMaxWait
	}
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-c.stopped:
			return &atfv1.NextWorkResponse{}, nil
		default:
		}
		work, err := c.poll(ctx, max, min(time.Until(deadline), popSlice))
		if err != nil {
			if ctx.Err() != nil {
				return &atfv1.NextWorkResponse{}, nil
			}
			return nil, connect.NewError(connect.CodeUnavailable, err)
		}
		if len(work) > 0 || time.Until(deadline) <= 0 {
			return &atfv1.NextWorkResponse{Work: work}, nil
		}
	}
}

// Subscribe starts following lambda changes (for Run) and returns once the
// subscription is in place, so that a deploy right after it is seen.
func (c *Controller) Subscribe(ctx context.Context) {
	changes := c.cfg.Store.LambdaChanges(ctx)
	c.mu.Lock()
	c.changes = changes
	c.mu.Unlock()
}

// noLambdasWait bounds a poll's wait while no lambda is deployed, in case
// the change announcing the first one was missed.
const noLambdasWait = 2 * time.Second

// poll pops and claims once, waiting up to wait for a first task.
func (c *Controller) poll(ctx context.Context, max int, wait time.Duration) ([]*atfv1.Work, error) {
	lambdas, err := c.popOrder(ctx)
	if err != nil {
		return nil, err
	}
	if len(lambdas) == 0 { // nothing to pop until a lambda is deployed
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		case <-time.After(min(wait, noLambdasWait)):
		}
		return nil, nil
	}
	c.mu.Lock()
	c.polls++
	c.mu.Unlock()
	popped, err := c.cfg.Store.Pop(ctx, lambdas, max, wait, c.control)
	c.mu.Lock()
	c.polls--
	c.mu.Unlock()
	if err != nil || len(popped) == 0 {
		return nil, err
	}
	c.mu.Lock()
	claims := make([]store.ClaimRequest, 0, len(popped))
	lambdaOf := make(map[string]*served, len(popped)) // pointers: a served is too large a map value to be stored in place
	for _, p := range popped {
		l, ok := c.queueOf[p.Queue]
		if !ok {
			continue
		}
		claims = append(claims, store.ClaimRequest{TaskID: p.TaskID, LambdaVersion: l.lambda.Version})
		lambdaOf[p.TaskID] = l
	}
	c.mu.Unlock()
	// The claim must not be abandoned half-way because the poll's caller
	// went away: the popped ids are ours now. A task we claim but cannot
	// hand out comes back after the claim timeout.
	ctx = context.WithoutCancel(ctx)
	claimStart := time.Now()
	tasks, err := c.cfg.Store.Claim(ctx, claims, c.cfg.ClaimTimeout)
	if err != nil {
		return nil, fmt.Errorf("claim %d tasks: %w", len(claims), err)
	}
	traceClaims(ctx, claimStart, tasks)
	work := make([]*atfv1.Work, len(tasks))
	protos := make([]workProto, len(tasks)) // the poll's messages in one allocation
	for i, t := range tasks {
		l := lambdaOf[t.ID]
		if l == nil { // not popped, or claimed twice
			l = &served{}
		}
		work[i] = protos[i].fill(t, l)
		delete(lambdaOf, t.ID)
	}
	// Popped but not claimed (cancelled meanwhile, a duplicate queue entry):
	// free the slots they took.
	for id, l := range lambdaOf {
		if l.pop.Cap > 0 {
			if err := c.cfg.Store.Release(ctx, l.pop.Running, id); err != nil {
				c.cfg.Logger.Warn("releasing a slot failed; its lease frees it", "task", id, "err", err)
			}
		}
	}
	return work, nil
}

// workProto is a Work with room for its timeout and execute_at.
type workProto struct {
	work      atfv1.Work
	timeout   durationpb.Duration
	executeAt timestamppb.Timestamp
}

// fill makes p the Work of claimed task t of lambda s (as
// durationpb.New and timestamppb.New would give its timeout and
// execute_at) and returns it.
func (p *workProto) fill(t store.Task, s *served) *atfv1.Work {
	l := s.lambda
	timeout := l.Timeout.Nanoseconds()
	p.timeout.Seconds, p.timeout.Nanos = timeout/1e9, int32(timeout%1e9)
	p.work = atfv1.Work{
		TaskId:            t.ID,
		Namespace:         t.Namespace,
		Lambda:            t.Lambda,
		LambdaVersion:     l.Version,
		ModuleSha256:      l.SHA256,
		Abi:               l.ABI,
		Payload:           t.Payload,
		Attempt:           int32(t.Attempt),
		MaxAttempts:       int32(t.MaxAttempts),
		FencingToken:      t.Token,
		Timeout:           &p.timeout,
		MemoryMb:          int32(l.MemoryMB),
		MaxOutputBytes:    int32(l.MaxOutputBytes),
		MaxLogBytes:       int32(l.MaxLogBytes),
		Traceparent:       t.TraceParent,
		PreviousExecution: t.LastExecution,
		Priority:          int32(t.Priority),
	}
	w := &p.work
	if due := t.DueAt(); !due.IsZero() {
		p.executeAt.Seconds, p.executeAt.Nanos = due.Unix(), int32(due.Nanosecond())
		w.ExecuteAt = &p.executeAt
	}
	if s.pop.Cap > 0 {
		w.Slot = s.pop.Running
	}
	w.AllowedHosts = l.AllowedHosts
	return w
}

// popOrder returns the lambdas to pop, in an order that rotates on every
// poll so that no lambda always goes first.
func (c *Controller) popOrder(ctx context.Context) ([]store.PopLambda, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotation++
	n := len(c.lambdas)
	out := make([]store.PopLambda, n)
	for i := range n {
		out[i] = c.lambdas[(i+c.rotation)%n].pop
	}
	return out, nil
}

// refresh re-reads the lambdas when the last read is older than
// LambdaRefresh or a change was announced.
func (c *Controller) refresh(ctx context.Context) error {
	c.mu.Lock()
	fresh := time.Since(c.refreshed) < c.cfg.LambdaRefresh
	c.mu.Unlock()
	if fresh {
		return nil
	}
	var lambdas []served
	queueOf := map[string]*served{}
	for _, ns := range c.cfg.Namespaces {
		ls, err := c.cfg.Store.ListLambdas(ctx, ns)
		if err != nil {
			return fmt.Errorf("list lambdas of %s: %w", ns, err)
		}
		for _, l := range ls {
			s := served{lambda: l, pop: store.PopLambda{
				Running: c.cfg.Store.RunningKey(ns, l.Name),
				Cap:     l.MaxConcurrency,
				Lease:   c.cfg.ClaimTimeout + l.Timeout + c.cfg.HeartbeatTimeout,
			}}
			for p := 9; p >= 0; p-- {
				s.pop.Queues = append(s.pop.Queues, c.cfg.Store.QueueKey(ns, l.Name, p))
			}
			for _, q := range s.pop.Queues {
				queueOf[q] = &s
			}
			lambdas = append(lambdas, s)
		}
	}
	c.mu.Lock()
	c.lambdas, c.queueOf, c.refreshed = lambdas, queueOf, time.Now()
	c.mu.Unlock()
	return nil
}

// GetModule returns a module's bytes by sha256.
func (c *Controller) GetModule(ctx context.Context, req *atfv1.GetModuleRequest) (*atfv1.GetModuleResponse, error) {
	sha := strings.ToLower(req.GetSha256())
	if len(sha) != 64 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("sha256 %q is not 64 hex digits", req.GetSha256()))
	}
	b, err := c.cfg.Store.GetModule(ctx, sha)
	if errors.Is(err, store.ErrNotFound) {
		return nil, connect.NewError(connect.CodeNotFound, err)
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	return &atfv1.GetModuleResponse{Wasm: b}, nil
}
