// Package hsc is ATF's heartbeat and status controller. Executors report to
// it: Heartbeat extends the leases of running tasks and tells the executor
// to continue, cancel or drop each one; SetResult records an execution's
// outcome, accepted only with the current fencing token so that a stalled
// executor whose claim has passed to another can never overwrite the new
// owner's result.
package hsc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// Store is what the HSC needs of the task store.
type Store interface {
	Heartbeat(ctx context.Context, beats []store.Beat, heartbeatTimeout time.Duration) ([]atfv1.Directive, error)
	SetResult(ctx context.Context, r store.Result) (atfv1.TaskState, error)
	GetTask(ctx context.Context, ns, id string) (store.Task, error)
	GetLambda(ctx context.Context, ns, name string) (store.Lambda, error)
}

// DefaultHeartbeatTimeout is how long a PROCESSING task may go without a
// heartbeat before it is re-enqueued.
const DefaultHeartbeatTimeout = 10 * time.Second

// Config configures an HSC.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// HeartbeatTimeout. Default 10s.
	HeartbeatTimeout time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// HSC implements atfv1connect.HeartbeatServiceHandler.
type HSC struct {
	cfg Config
}

// New returns an HSC.
func New(cfg Config) *HSC {
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &HSC{cfg: cfg}
}

// Heartbeat extends the leases of running tasks.
func (h *HSC) Heartbeat(ctx context.Context, req *atfv1.HeartbeatRequest) (*atfv1.HeartbeatResponse, error) {
	beats := make([]store.Beat, 0, len(req.GetBeats()))
	for _, b := range req.GetBeats() {
		p := int(b.GetProgress())
		if p < 0 || p > 100 {
			p = -1
		}
		beats = append(beats, store.Beat{TaskID: b.GetTaskId(), Token: b.GetFencingToken(), Progress: p})
	}
	ds, err := h.cfg.Store.Heartbeat(ctx, beats, h.cfg.HeartbeatTimeout)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("heartbeat: %w", err))
	}
	return &atfv1.HeartbeatResponse{Directives: ds}, nil
}

// SetResult records an execution's outcome.
func (h *HSC) SetResult(ctx context.Context, req *atfv1.SetResultRequest) (_ *atfv1.SetResultResponse, err error) {
	ctx, span := startSetResult(ctx, req)
	defer func() { endSetResult(span, err) }()
	r, err := h.prepareResult(ctx, req)
	if err != nil {
		return nil, err
	}
	state, err := h.cfg.Store.SetResult(ctx, r)
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.SetResultResponse{State: state}, nil
}

// prepareResult checks a result and makes what must precede its write: the
// attempt's logs and span context kept, a retry's time reckoned.
func (h *HSC) prepareResult(ctx context.Context, req *atfv1.SetResultRequest) (store.Result, error) {
	if req.GetOutcome() == atfv1.Outcome_OUTCOME_UNSPECIFIED {
		return store.Result{}, connect.NewError(connect.CodeInvalidArgument, errors.New("outcome is missing"))
	}
	r := store.Result{
		TaskID:          req.GetTaskId(),
		Token:           req.GetFencingToken(),
		Outcome:         req.GetOutcome(),
		Output:          req.GetOutput(),
		OutputTruncated: req.GetOutputTruncated(),
		Error:           req.GetError(),
		Duration:        req.GetDuration().AsDuration(),
		Slot:            req.GetSlot(),
	}
	if err := h.recordAttempt(ctx, req); err != nil {
		return store.Result{}, toConnect(err)
	}
	if r.Outcome == atfv1.Outcome_OUTCOME_RETRY {
		at, err := h.retryAt(ctx, req.GetNamespace(), req.GetTaskId())
		if err != nil {
			return store.Result{}, toConnect(err)
		}
		r.RetryAt = at
	}
	return r, nil
}

// preparesWithoutIO reports whether prepareResult makes no round trip for
// req: no attempt to record, no retry to reckon.
func (h *HSC) preparesWithoutIO(req *atfv1.SetResultRequest) bool {
	return req.GetOutcome() != atfv1.Outcome_OUTCOME_RETRY && h.recorderFor(req) == nil
}

// retryAt is when a task that asked for a retry runs again: its lambda's
// backoff, doubled per attempt, capped, with jitter.
func (h *HSC) retryAt(ctx context.Context, ns, id string) (time.Time, error) {
	t, err := h.cfg.Store.GetTask(ctx, ns, id)
	if err != nil {
		return time.Time{}, err
	}
	base, max := store.DefaultRetryBackoff, store.DefaultRetryBackoffMax
	if l, err := h.cfg.Store.GetLambda(ctx, t.Namespace, t.Lambda); err == nil {
		base, max = l.RetryBackoff, l.RetryBackoffMax
	}
	return h.cfg.Now().Add(Backoff(base, max, t.Attempt, rand.Float64())), nil
}

// Backoff is the delay before the retry that follows attempt (1-based):
// base·2^(attempt-1), capped at max, then reduced by up to 20% with
// jitter ∈ [0,1) so that tasks failing together do not retry together.
func Backoff(base, max time.Duration, attempt int, jitter float64) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if max > 0 && d > max {
		d = max
	}
	return d - time.Duration(float64(d)*0.2*jitter)
}

func toConnect(err error) error {
	switch {
	case errors.Is(err, store.ErrClaimLost):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, store.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	}
	return connect.NewError(connect.CodeUnavailable, err)
}
