package frontend

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// Schedule stores a task for a lambda.
func (f *Frontend) Schedule(ctx context.Context, req *atfv1.ScheduleRequest) (*atfv1.ScheduleResponse, error) {
	t, dedup, err := f.schedule(ctx, req, connectHeader(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.ScheduleResponse{Task: TaskToProto(t), Deduplicated: dedup}, nil
}

func (f *Frontend) schedule(ctx context.Context, req *atfv1.ScheduleRequest, h http.Header) (t store.Task, dedup bool, err error) {
	ctx, span := startSchedule(ctx, req.GetLambda(), h)
	var stored time.Time
	defer func() { endSchedule(ctx, span, t, dedup, stored, err) }()
	nt, err := f.newTask(ctx, req, f.cachedLambda)
	if err != nil {
		return store.Task{}, false, err
	}
	nt.TraceParent = scheduleTraceParent(ctx, span, h)
	stored = time.Now()
	return f.cfg.Store.Schedule(ctx, nt)
}

// newTask validates a schedule request and makes the task to store; the
// lambda is read with getLambda.
func (f *Frontend) newTask(ctx context.Context, req *atfv1.ScheduleRequest, getLambda func(ctx context.Context, ns, name string) (store.Lambda, error)) (store.NewTask, error) {
	if err := validateName("lambda name", req.GetLambda()); err != nil {
		return store.NewTask{}, err
	}
	if len(req.GetPayload()) > f.cfg.MaxPayloadBytes {
		return store.NewTask{}, &tooLargeError{what: fmt.Sprintf("payload (%d bytes)", len(req.GetPayload())), limit: f.cfg.MaxPayloadBytes}
	}
	if err := validateTask(int(req.GetPriority()), req.GetKey(), req.GetCollection()); err != nil {
		return store.NewTask{}, err
	}
	ns := namespace(ctx)
	l, err := getLambda(ctx, ns, req.GetLambda())
	if err != nil {
		return store.NewTask{}, fmt.Errorf("%w: deploy it first (PUT /v1/lambdas/%s)", err, req.GetLambda())
	}
	nt := store.NewTask{
		Namespace:   ns,
		Lambda:      l.Name,
		Payload:     req.GetPayload(),
		Priority:    int(req.GetPriority()),
		Key:         req.GetKey(),
		Collection:  req.GetCollection(),
		MaxAttempts: l.MaxAttempts,
	}
	if req.GetExecuteAt() != nil {
		if err := req.GetExecuteAt().CheckValid(); err != nil {
			return store.NewTask{}, invalidf("executeAt is not a valid time: %v", err)
		}
		nt.ExecuteAt = req.GetExecuteAt().AsTime()
	}
	return nt, nil
}

// GetTask returns a task.
func (f *Frontend) GetTask(ctx context.Context, req *atfv1.GetTaskRequest) (*atfv1.GetTaskResponse, error) {
	t, err := f.getTask(ctx, req.GetId())
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.GetTaskResponse{Task: TaskToProto(t)}, nil
}

func (f *Frontend) getTask(ctx context.Context, id string) (store.Task, error) {
	if id == "" {
		return store.Task{}, invalidf("task id is missing")
	}
	return f.cfg.Store.GetTask(ctx, namespace(ctx), id)
}

// ListTasks pages through a lambda's tasks, newest first.
func (f *Frontend) ListTasks(ctx context.Context, req *atfv1.ListTasksRequest) (*atfv1.ListTasksResponse, error) {
	if err := validateName("lambda name", req.GetLambda()); err != nil {
		return nil, toConnect(err)
	}
	if req.GetPageSize() < 0 || req.GetPageSize() > 1000 {
		return nil, toConnect(invalidf("page_size %d is out of range: use 1-1000 (default 100)", req.GetPageSize()))
	}
	if req.GetCollection() != "" {
		if err := validateName("collection", req.GetCollection()); err != nil {
			return nil, toConnect(err)
		}
	}
	if req.GetDeadLetters() && req.GetState() != atfv1.TaskState_TASK_STATE_UNSPECIFIED && req.GetState() != atfv1.TaskState_TASK_STATE_FATAL_FAILURE {
		return nil, toConnect(invalidf("deadLetters lists FATAL_FAILURE tasks: state %s cannot be one", req.GetState()))
	}
	ts, next, err := f.cfg.Store.ListTasks(ctx, store.ListFilter{
		DeadLetters: req.GetDeadLetters(),
		Namespace:   namespace(ctx),
		Lambda:      req.GetLambda(),
		State:       req.GetState(),
		Collection:  req.GetCollection(),
		PageSize:    int(req.GetPageSize()),
		PageToken:   req.GetPageToken(),
	})
	if err != nil {
		return nil, toConnect(err)
	}
	res := &atfv1.ListTasksResponse{NextPageToken: next, Tasks: make([]*atfv1.Task, 0, len(ts))}
	for _, t := range ts {
		res.Tasks = append(res.Tasks, TaskToProto(t))
	}
	return res, nil
}

// CancelTask cancels a task.
func (f *Frontend) CancelTask(ctx context.Context, req *atfv1.CancelTaskRequest) (*atfv1.CancelTaskResponse, error) {
	if req.GetId() == "" {
		return nil, toConnect(invalidf("task id is missing"))
	}
	t, err := f.cfg.Store.Cancel(ctx, namespace(ctx), req.GetId())
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.CancelTaskResponse{Task: TaskToProto(t)}, nil
}

// RetryTask runs a dead letter again.
func (f *Frontend) RetryTask(ctx context.Context, req *atfv1.RetryTaskRequest) (*atfv1.RetryTaskResponse, error) {
	if req.GetId() == "" {
		return nil, toConnect(invalidf("task id is missing"))
	}
	start := time.Now()
	t, err := f.cfg.Store.Retry(ctx, namespace(ctx), req.GetId())
	if err != nil {
		return nil, toConnect(err)
	}
	if t.State == atfv1.TaskState_TASK_STATE_ENQUEUED { // not when it waits for its execute_at (NEW)
		retryEnqueued(ctx, t, start)
	}
	return &atfv1.RetryTaskResponse{Task: TaskToProto(t)}, nil
}

// connectHeader returns the request headers of a Connect call.
func connectHeader(ctx context.Context) http.Header {
	if ci, ok := connect.CallInfoForHandlerContext(ctx); ok {
		return ci.RequestHeader()
	}
	return nil
}

// cachedLambda reads a lambda through the frontend's short-lived cache.
func (f *Frontend) cachedLambda(ctx context.Context, ns, name string) (store.Lambda, error) {
	return f.lambdas.get(ctx, f.cfg.Store, ns, name)
}
