package frontend

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// A watch polls the task's version (store.TaskVersion: one HMGET of a few
// short fields) with backoff, and reads the whole task only when it
// changed. Polling rather than a PUBLISH from every state-changing script
// keeps the cost on the watched tasks alone: the hot-path scripts stay as
// they are, and no pub/sub message is broadcast to a Cluster for tasks
// nobody watches. The price: a state held for less than one poll can be
// skipped (the terminal state never is), and a change is seen up to
// watchMaxPoll late after a quiet spell.
const (
	watchMinPoll = 10 * time.Millisecond
	watchMaxPoll = 250 * time.Millisecond
)

// WatchTask streams a task on every change until it is terminal.
func (f *Frontend) WatchTask(ctx context.Context, req *atfv1.WatchTaskRequest, stream *connect.ServerStream[atfv1.WatchTaskResponse]) error {
	err := f.watch(ctx, req.GetId(), func(t store.Task) error {
		return stream.Send(&atfv1.WatchTaskResponse{Task: TaskToProto(t)})
	})
	return toConnect(err)
}

func terminal(s atfv1.TaskState) bool {
	switch s {
	case atfv1.TaskState_TASK_STATE_SUCCESS, atfv1.TaskState_TASK_STATE_FATAL_FAILURE, atfv1.TaskState_TASK_STATE_CANCELLED:
		return true
	}
	return false
}

// watch sends the task now and after every change, until it is terminal
// or ctx ends.
func (f *Frontend) watch(ctx context.Context, id string, send func(store.Task) error) error {
	ns := namespace(ctx)
	if id == "" {
		return invalidf("task id is missing")
	}
	ver, err := f.cfg.Store.TaskVersion(ctx, ns, id)
	if err != nil {
		return err
	}
	t, err := f.getTask(ctx, id)
	if err != nil {
		return err
	}
	if err := send(t); err != nil {
		return err
	}
	poll := watchMinPoll
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for !terminal(t.State) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		v, err := f.cfg.Store.TaskVersion(ctx, ns, id)
		if err != nil {
			return err
		}
		if v == ver {
			poll = min(poll*2, watchMaxPoll)
			timer.Reset(poll)
			continue
		}
		ver = v
		if t, err = f.getTask(ctx, id); err != nil {
			return err
		}
		if err := send(t); err != nil {
			return err
		}
		poll = watchMinPoll
		timer.Reset(poll)
	}
	return nil
}

// restWatch: GET /v1/tasks/{id}/watch streams the task as JSON lines
// (application/x-ndjson), one per change, and ends when it is terminal.
func (f *Frontend) restWatch(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	started := false
	err := f.watch(r.Context(), r.PathValue("id"), func(t store.Task) error {
		b, err := protojson.Marshal(TaskToProto(t))
		if err != nil {
			return err
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && !started {
		writeError(w, r, err)
	}
}
