package frontend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// RegisterREST mounts the plain HTTP routes of DESIGN.md on mux.
func (f *Frontend) RegisterREST(mux *http.ServeMux) {
	mux.HandleFunc("PUT /v1/lambdas/{name}", f.restDeploy)
	mux.HandleFunc("GET /v1/lambdas", f.restListLambdas)
	mux.HandleFunc("GET /v1/lambdas/{name}", f.restGetLambda)
	mux.HandleFunc("DELETE /v1/lambdas/{name}", f.restDeleteLambda)
	mux.HandleFunc("POST /v1/lambdas/{name}/tasks", f.restSchedule)
	mux.HandleFunc("GET /v1/lambdas/{name}/tasks", f.restListTasks)
	mux.HandleFunc("GET /v1/tasks/{id}", f.restGetTask)
	mux.HandleFunc("GET /v1/tasks/{id}/output", f.restOutput)
	mux.HandleFunc("GET /v1/tasks/{id}/logs", f.restLogs)
	mux.HandleFunc("DELETE /v1/tasks/{id}", f.restCancel)
	mux.HandleFunc("POST /v1/tasks/{id}/retry", f.restRetry)
	mux.HandleFunc("POST /v1/lambdas/{name}/tasks:batch", f.restScheduleBatch)
	mux.HandleFunc("GET /v1/lambdas/{name}/dead-letters", f.restDeadLetters)
	mux.HandleFunc("POST /v1/lambdas/{name}/pause", f.restPause)
	mux.HandleFunc("POST /v1/lambdas/{name}/resume", f.restResume)
	mux.HandleFunc("POST /v1/lambdas/{name}/drop", f.restDrop)
	mux.HandleFunc("PUT /v1/lambdas/{name}/schedule", f.restSetSchedule)
	mux.HandleFunc("DELETE /v1/lambdas/{name}/schedule", f.restDeleteSchedule)
	mux.HandleFunc("GET /v1/tasks/{id}/watch", f.restWatch)
}

var errorWriter = connect.NewErrorWriter()

// writeError writes err as a Connect error ({"code","message"} with the
// matching HTTP status); an upload over its limit answers 413.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var big *tooLargeError
	if errors.As(err, &big) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": connect.CodeResourceExhausted.String(), "message": err.Error()})
		return
	}
	_ = errorWriter.Write(w, r, toConnect(err))
}

func writeProto(w http.ResponseWriter, status int, m proto.Message) {
	b, err := protojson.Marshal(m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// protojson varies its whitespace on purpose; curl users and their
	// scripts get one stable, compact form.
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out.WriteByte('\n')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(out.Bytes())
}

// readBody reads at most limit bytes of the request body; what is bigger is
// a tooLargeError naming what.
func readBody(w http.ResponseWriter, r *http.Request, what string, limit int) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &tooLargeError{what: what, limit: limit}
	}
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return b, nil
}

func (f *Frontend) restDeploy(w http.ResponseWriter, r *http.Request) {
	req, err := deployRequestFromQuery(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if req.Wasm, err = readBody(w, r, "module", f.cfg.MaxModuleBytes); err != nil {
		writeError(w, r, err)
		return
	}
	l, err := f.deploy(r.Context(), req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	f.writeLambda(w, r, l)
}

func deployRequestFromQuery(r *http.Request) (*atfv1.DeployLambdaRequest, error) {
	q := r.URL.Query()
	req := &atfv1.DeployLambdaRequest{Name: r.PathValue("name")}
	durations := []struct {
		param string
		dst   **durationpb.Duration
	}{{"timeout", &req.Timeout}, {"retry_backoff", &req.RetryBackoff}, {"retry_backoff_max", &req.RetryBackoffMax}}
	for _, d := range durations {
		if v := q.Get(d.param); v != "" {
			dur, err := parseDuration(d.param, v)
			if err != nil {
				return nil, err
			}
			*d.dst = durationpb.New(dur)
		}
	}
	ints := []struct {
		param string
		dst   *int32
	}{{"memory_mb", &req.MemoryMb}, {"max_attempts", &req.MaxAttempts}, {"max_concurrency", &req.MaxConcurrency},
		{"max_output_bytes", &req.MaxOutputBytes}, {"max_log_bytes", &req.MaxLogBytes}}
	for _, i := range ints {
		if v := q.Get(i.param); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				return nil, invalidf("%s=%q is not a whole number", i.param, v)
			}
			*i.dst = int32(n)
		}
	}
	for _, v := range q["allowed_hosts"] {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				req.AllowedHosts = append(req.AllowedHosts, h)
			}
		}
	}
	return req, nil
}

func (f *Frontend) restListLambdas(w http.ResponseWriter, r *http.Request) {
	res, err := f.ListLambdas(r.Context(), &atfv1.ListLambdasRequest{})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, res)
}

func (f *Frontend) restGetLambda(w http.ResponseWriter, r *http.Request) {
	l, err := f.getLambda(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	f.writeLambda(w, r, l)
}

func (f *Frontend) restDeleteLambda(w http.ResponseWriter, r *http.Request) {
	if _, err := f.DeleteLambda(r.Context(), &atfv1.DeleteLambdaRequest{Name: r.PathValue("name")}); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *Frontend) restSchedule(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &atfv1.ScheduleRequest{
		Lambda:     r.PathValue("name"),
		Key:        q.Get("key"),
		Collection: q.Get("collection"),
	}
	if v := q.Get("priority"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, r, invalidf("priority=%q is not a whole number: use 0-9", v))
			return
		}
		req.Priority = int32(p)
	}
	if v := q.Get("at"); v != "" {
		at, err := parseAt(v, f.cfg.Now())
		if err != nil {
			writeError(w, r, err)
			return
		}
		req.ExecuteAt = timestamppb.New(at)
	}
	var err error
	if req.Payload, err = readBody(w, r, "payload", f.cfg.MaxPayloadBytes); err != nil {
		writeError(w, r, err)
		return
	}
	t, dedup, err := f.schedule(r.Context(), req, r.Header)
	if err != nil {
		writeError(w, r, err)
		return
	}
	status := http.StatusCreated
	if dedup {
		status = http.StatusOK
		w.Header().Set("Atf-Deduplicated", "true")
	}
	w.Header().Set("Location", "/v1/tasks/"+t.ID)
	writeProto(w, status, TaskToProto(t))
}

// parseAt reads the `at` parameter: an RFC 3339 time or a delay from now.
func parseAt(v string, now time.Time) (time.Time, error) {
	if at, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return at, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(d), nil
	}
	return time.Time{}, invalidf("at=%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a delay (30s, 5m)", v)
}

func (f *Frontend) restListTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &atfv1.ListTasksRequest{
		Lambda:     r.PathValue("name"),
		Collection: q.Get("collection"),
		PageToken:  q.Get("page_token"),
	}
	if v := q.Get("state"); v != "" {
		s, err := parseState(v)
		if err != nil {
			writeError(w, r, err)
			return
		}
		req.State = s
	}
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, r, invalidf("page_size=%q is not a whole number", v))
			return
		}
		req.PageSize = int32(n)
	}
	res, err := f.ListTasks(r.Context(), req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, res)
}

// parseState accepts "success", "SUCCESS" and "TASK_STATE_SUCCESS".
func parseState(v string) (atfv1.TaskState, error) {
	name := strings.ToUpper(v)
	if !strings.HasPrefix(name, "TASK_STATE_") {
		name = "TASK_STATE_" + name
	}
	s, ok := atfv1.TaskState_value[name]
	if !ok || s == 0 {
		return 0, invalidf("state=%q is not a task state: use one of new, enqueued, claimed, processing, retriable_failure, success, fatal_failure, cancelled", v)
	}
	return atfv1.TaskState(s), nil
}

func (f *Frontend) restGetTask(w http.ResponseWriter, r *http.Request) {
	t, err := f.getTaskWait(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, TaskToProto(t))
}

func (f *Frontend) restOutput(w http.ResponseWriter, r *http.Request) {
	t, err := f.getTaskWait(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if t.FinishedAt.IsZero() && len(t.Output) == 0 {
		writeError(w, r, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("task %s is %s: its output is served once it finishes", t.ID, t.State)))
		return
	}
	w.Header().Set("Content-Type", http.DetectContentType(t.Output))
	w.Header().Set("Atf-Task-State", t.State.String())
	if t.OutputTruncated {
		w.Header().Set("Atf-Output-Truncated", "true")
	}
	_, _ = w.Write(t.Output)
}

func (f *Frontend) restCancel(w http.ResponseWriter, r *http.Request) {
	res, err := f.CancelTask(r.Context(), &atfv1.CancelTaskRequest{Id: r.PathValue("id")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, res.GetTask())
}

func (f *Frontend) restRetry(w http.ResponseWriter, r *http.Request) {
	res, err := f.RetryTask(r.Context(), &atfv1.RetryTaskRequest{Id: r.PathValue("id")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, res.GetTask())
}

// maxWait bounds the `wait` parameter of the task routes.
const maxWait = 60 * time.Second

// getTaskWait reads the task of the route; with `wait=5s` it waits up to
// that long for the task to finish, so a script can schedule and then read
// the result without a polling loop of its own.
func (f *Frontend) getTaskWait(r *http.Request) (store.Task, error) {
	id := r.PathValue("id")
	t, err := f.getTask(r.Context(), id)
	v := r.URL.Query().Get("wait")
	if err != nil || v == "" {
		return t, err
	}
	wait, err := parseDuration("wait", v)
	if err != nil {
		return store.Task{}, err
	}
	if wait < 0 || wait > maxWait {
		return store.Task{}, invalidf("wait=%s is out of range: use at most %s", v, maxWait)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := 5 * time.Millisecond
	for t.FinishedAt.IsZero() {
		select {
		case <-deadline.C:
			return t, nil
		case <-r.Context().Done():
			return t, r.Context().Err()
		case <-time.After(poll):
		}
		poll = min(poll*2, 100*time.Millisecond)
		if t, err = f.getTask(r.Context(), id); err != nil {
			return t, err
		}
	}
	return t, nil
}
