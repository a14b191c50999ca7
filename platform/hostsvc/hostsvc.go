// Package hostsvc serves HostService: the key-value store and follow-up
// tasks behind the atf_v1 host functions, called by executors for their
// running tasks.
//
// Every call names its caller, a running task and its fencing token; the
// call is refused (FailedPrecondition) unless that claim is current, so a
// module whose claim was lost can no longer write, and the namespace is
// always the caller task's. A follow-up task is scheduled through the
// frontend, with the same validation and limits as a client's, in the
// caller's trace (the request context carries the executor's span).
package hostsvc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// Store is what the service needs of the task store.
type Store interface {
	GetTask(ctx context.Context, ns, id string) (store.Task, error)
	KVGet(ctx context.Context, ns, key string) ([]byte, bool, error)
	KVSet(ctx context.Context, ns, key string, value []byte, ttl time.Duration) error
	KVDelete(ctx context.Context, ns, key string) (bool, error)
}

// Scheduler schedules tasks; *frontend.Frontend is one.
type Scheduler interface {
	Schedule(ctx context.Context, req *atfv1.ScheduleRequest) (*atfv1.ScheduleResponse, error)
}

// Config configures a Service.
type Config struct {
	Store     Store
	Scheduler Scheduler // nil: ScheduleFollowUp is Unimplemented
}

// Service implements atfv1connect.HostServiceHandler.
type Service struct{ cfg Config }

// New returns a Service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// caller checks that c is a running task's current claim and returns it.
func (s *Service) caller(ctx context.Context, c *atfv1.Caller) (store.Task, error) {
	if c.GetTaskId() == "" || c.GetNamespace() == "" {
		return store.Task{}, connect.NewError(connect.CodeInvalidArgument, errors.New("caller: task_id and namespace are required"))
	}
	t, err := s.cfg.Store.GetTask(ctx, c.GetNamespace(), c.GetTaskId())
	if errors.Is(err, store.ErrNotFound) {
		return store.Task{}, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("caller: %w", err))
	}
	if err != nil {
		return store.Task{}, connect.NewError(connect.CodeUnavailable, err)
	}
	running := t.State == atfv1.TaskState_TASK_STATE_CLAIMED || t.State == atfv1.TaskState_TASK_STATE_PROCESSING
	if t.Token != c.GetFencingToken() || !running {
		return store.Task{}, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("caller: task %s is %s with claim %d, not running under claim %d", t.ID, t.State, t.Token, c.GetFencingToken()))
	}
	return t, nil
}

func storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrTooLarge):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, store.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewError(connect.CodeUnavailable, err)
}

// GetValue implements HostService.GetValue.
func (s *Service) GetValue(ctx context.Context, req *atfv1.GetValueRequest) (*atfv1.GetValueResponse, error) {
	t, err := s.caller(ctx, req.GetCaller())
	if err != nil {
		return nil, err
	}
	v, found, err := s.cfg.Store.KVGet(ctx, t.Namespace, req.GetKey())
	if err != nil {
		return nil, storeError(err)
	}
	if !found {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("key %q is not set", req.GetKey()))
	}
	return &atfv1.GetValueResponse{Value: v}, nil
}

// SetValue implements HostService.SetValue.
func (s *Service) SetValue(ctx context.Context, req *atfv1.SetValueRequest) (*atfv1.SetValueResponse, error) {
	t, err := s.caller(ctx, req.GetCaller())
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.KVSet(ctx, t.Namespace, req.GetKey(), req.GetValue(), req.GetTtl().AsDuration()); err != nil {
		return nil, storeError(err)
	}
	return &atfv1.SetValueResponse{}, nil
}

// DeleteValue implements HostService.DeleteValue.
func (s *Service) DeleteValue(ctx context.Context, req *atfv1.DeleteValueRequest) (*atfv1.DeleteValueResponse, error) {
	t, err := s.caller(ctx, req.GetCaller())
	if err != nil {
		return nil, err
	}
	found, err := s.cfg.Store.KVDelete(ctx, t.Namespace, req.GetKey())
	if err != nil {
		return nil, storeError(err)
	}
	if !found {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("key %q is not set", req.GetKey()))
	}
	return &atfv1.DeleteValueResponse{}, nil
}

// ScheduleFollowUp implements HostService.ScheduleFollowUp.
func (s *Service) ScheduleFollowUp(ctx context.Context, req *atfv1.ScheduleFollowUpRequest) (*atfv1.ScheduleFollowUpResponse, error) {
	if s.cfg.Scheduler == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server has no frontend role to schedule tasks"))
	}
	t, err := s.caller(ctx, req.GetCaller())
	if err != nil {
		return nil, err
	}
	lambda := req.GetLambda()
	if lambda == "" {
		lambda = t.Lambda
	}
	sr := &atfv1.ScheduleRequest{Lambda: lambda, Payload: req.GetPayload(), Key: req.GetKey(), Priority: int32(t.Priority)}
	if d := req.GetDelay().AsDuration(); d > 0 {
		sr.ExecuteAt = timestamppb.New(time.Now().Add(d))
	}
	res, err := s.cfg.Scheduler.Schedule(ctx, sr)
	if err != nil {
		return nil, err
	}
	return &atfv1.ScheduleFollowUpResponse{TaskId: res.GetTask().GetId(), Deduplicated: res.GetDeduplicated()}, nil
}
