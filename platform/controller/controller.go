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
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// Store is what the controller needs of the task store.
type Store interface {
	ListLambdas(ctx context.Context, ns string) ([]store.Lambda, error)
	QueueKey(ns, lambda string, priority int) string
	Pop(ctx context.Context, queues []string, max int, wait time.Duration) ([]store.Popped, error)
	Claim(ctx context.Context, claims []store.ClaimRequest, claimTimeout time.Duration) ([]store.Task, error)
	GetModule(ctx context.Context, sha256 string) ([]byte, error)
}

// Defaults of Config.
const (
	DefaultClaimTimeout  = 30 * time.Second
	DefaultLambdaRefresh = time.Second
	DefaultMaxWait       = 30 * time.Second
	// popSlice bounds one blocking pop, so that a lambda deployed while a
	// poll waits is served within it.
	popSlice = time.Second
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
	// LambdaRefresh: how often the set of lambdas (and so of queues) is
	// read again. Default 1s.
	LambdaRefresh time.Duration
}

func (c Config) withDefaults() Config {
	if len(c.Namespaces) == 0 {
		c.Namespaces = []string{"default"}
	}
	if c.ClaimTimeout <= 0 {
		c.ClaimTimeout = DefaultClaimTimeout
	}
	if c.LambdaRefresh <= 0 {
		c.LambdaRefresh = DefaultLambdaRefresh
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Controller implements atfv1connect.ControllerServiceHandler.
type Controller struct {
	cfg Config

	mu        sync.Mutex
	lambdas   map[string]store.Lambda // by queue key prefix "<ns>/<name>"
	queues    [][]string              // queue keys per priority, highest first
	queueOf   map[string]string       // queue key -> "<ns>/<name>"
	refreshed time.Time
	rotation  int
}

// New returns a Controller.
func New(cfg Config) *Controller {
	return &Controller{cfg: cfg.withDefaults()}
}

// NextWork long-polls for up to req.MaxTasks claimed tasks.
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

// poll pops and claims once, waiting up to wait for a first task.
func (c *Controller) poll(ctx context.Context, max int, wait time.Duration) ([]*atfv1.Work, error) {
	queues, err := c.queueOrder(ctx)
	if err != nil {
		return nil, err
	}
	if len(queues) == 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
			return nil, nil
		}
	}
	popped, err := c.cfg.Store.Pop(ctx, queues, max, wait)
	if err != nil || len(popped) == 0 {
		return nil, err
	}
	c.mu.Lock()
	claims := make([]store.ClaimRequest, 0, len(popped))
	lambdaOf := make(map[string]store.Lambda, len(popped))
	for _, p := range popped {
		l, ok := c.lambdas[c.queueOf[p.Queue]]
		if !ok {
			continue
		}
		claims = append(claims, store.ClaimRequest{TaskID: p.TaskID, LambdaVersion: l.Version})
		lambdaOf[p.TaskID] = l
	}
	c.mu.Unlock()
	// The claim must not be abandoned half-way because the poll's caller
	// went away: the popped ids are ours now. A task we claim but cannot
	// hand out comes back after the claim timeout.
	tasks, err := c.cfg.Store.Claim(context.WithoutCancel(ctx), claims, c.cfg.ClaimTimeout)
	if err != nil {
		return nil, fmt.Errorf("claim %d tasks: %w", len(claims), err)
	}
	work := make([]*atfv1.Work, 0, len(tasks))
	for _, t := range tasks {
		work = append(work, workFor(t, lambdaOf[t.ID]))
	}
	return work, nil
}

func workFor(t store.Task, l store.Lambda) *atfv1.Work {
	return &atfv1.Work{
		TaskId:        t.ID,
		Namespace:     t.Namespace,
		Lambda:        t.Lambda,
		LambdaVersion: l.Version,
		ModuleSha256:  l.SHA256,
		Abi:           l.ABI,
		Payload:       t.Payload,
		Attempt:       int32(t.Attempt),
		MaxAttempts:   int32(t.MaxAttempts),
		FencingToken:  t.Token,
		Timeout:       durationpb.New(l.Timeout),
		MemoryMb:      int32(l.MemoryMB),
		Traceparent:   t.TraceParent,
		Priority:      int32(t.Priority),
	}
}

// queueOrder returns the queue keys to pop, highest priority first, with
// the lambdas at each priority in rotating order.
func (c *Controller) queueOrder(ctx context.Context) ([]string, error) {
	if err := c.refresh(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotation++
	var keys []string
	for _, level := range c.queues {
		n := len(level)
		for i := range n {
			keys = append(keys, level[(i+c.rotation)%n])
		}
	}
	return keys, nil
}

// refresh re-reads the lambdas when the last read is older than
// LambdaRefresh.
func (c *Controller) refresh(ctx context.Context) error {
	c.mu.Lock()
	fresh := time.Since(c.refreshed) < c.cfg.LambdaRefresh
	c.mu.Unlock()
	if fresh {
		return nil
	}
	lambdas := map[string]store.Lambda{}
	queueOf := map[string]string{}
	queues := make([][]string, 10)
	for _, ns := range c.cfg.Namespaces {
		ls, err := c.cfg.Store.ListLambdas(ctx, ns)
		if err != nil {
			return fmt.Errorf("list lambdas of %s: %w", ns, err)
		}
		for _, l := range ls {
			id := ns + "/" + l.Name
			lambdas[id] = l
			for p := 9; p >= 0; p-- {
				k := c.cfg.Store.QueueKey(ns, l.Name, p)
				queueOf[k] = id
				queues[9-p] = append(queues[9-p], k)
			}
		}
	}
	c.mu.Lock()
	c.lambdas, c.queueOf, c.queues, c.refreshed = lambdas, queueOf, queues, time.Now()
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
