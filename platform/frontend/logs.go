package frontend

import (
	"context"
	"net/http"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// LogStore is the optional part of Store that serves task logs;
// *store.Store is one.
type LogStore interface {
	TaskLogs(ctx context.Context, ns, id string) (string, error)
}

// GetTaskLogs returns the end of the task's latest attempt's stderr.
func (f *Frontend) GetTaskLogs(ctx context.Context, req *atfv1.GetTaskLogsRequest) (*atfv1.GetTaskLogsResponse, error) {
	logs, err := f.taskLogs(ctx, req.GetId())
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.GetTaskLogsResponse{Logs: logs}, nil
}

func (f *Frontend) taskLogs(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", invalidf("task id is missing")
	}
	ls, ok := f.cfg.Store.(LogStore)
	if !ok {
		return "", nil
	}
	return ls.TaskLogs(ctx, namespace(ctx), id)
}

// restLogs serves GET /v1/tasks/{id}/logs: the logs as plain text;
// ?wait=5s first waits up to that long for the task to finish.
func (f *Frontend) restLogs(w http.ResponseWriter, r *http.Request) {
	t, err := f.getTaskWait(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	logs, err := f.taskLogs(r.Context(), t.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Atf-Task-State", t.State.String())
	_, _ = w.Write([]byte(logs))
}
