package frontend

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// indexError is the error of one task of a batch; the whole batch is
// refused because of it. It keeps the task's error for errors.As, so the
// Connect code is the task's own (400, 404, 413).
type indexError struct {
	index int
	err   error
}

func (e *indexError) Error() string { return fmt.Sprintf("tasks[%d]: %v", e.index, e.err) }
func (e *indexError) Unwrap() error { return e.err }

// ScheduleBatch stores up to 1000 tasks, all or none.
func (f *Frontend) ScheduleBatch(ctx context.Context, req *atfv1.ScheduleBatchRequest) (*atfv1.ScheduleBatchResponse, error) {
	res, err := f.scheduleBatch(ctx, req.GetTasks(), connectHeader(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	return batchResponse(res), nil
}

func batchResponse(res []store.BatchResult) *atfv1.ScheduleBatchResponse {
	out := &atfv1.ScheduleBatchResponse{Results: make([]*atfv1.ScheduleResponse, len(res))}
	// The batch's messages in two allocations, not several per task.
	tasks := make([]taskProto, len(res))
	results := make([]atfv1.ScheduleResponse, len(res))
	for i, r := range res {
		tasks[i].fill(r.Task)
		results[i].Task, results[i].Deduplicated = &tasks[i].task, r.Deduplicated
		out.Results[i] = &results[i]
	}
	return out
}

// scheduleBatch checks every task — its lambda deployed, its size, its
// priority, key and collection — before the store writes any, and refuses
// the batch with the index of the first bad one. Each task gets its own
// atf.schedule span, as if scheduled alone: children of the caller's
// context, so the tasks of a batch with one share its trace.
func (f *Frontend) scheduleBatch(ctx context.Context, reqs []*atfv1.ScheduleRequest, h http.Header) ([]store.BatchResult, error) {
	if len(reqs) == 0 {
		return nil, invalidf("the batch is empty: send 1-%d tasks", store.MaxBatch)
	}
	if len(reqs) > store.MaxBatch {
		return nil, invalidf("the batch holds %d tasks: send at most %d per call", len(reqs), store.MaxBatch)
	}
	total := 0
	for _, r := range reqs {
		total += len(r.GetPayload())
	}
	if total > f.cfg.MaxBatchBytes {
		return nil, &tooLargeError{what: fmt.Sprintf("the batch's payloads (%d bytes together)", total), limit: f.cfg.MaxBatchBytes}
	}
	// Each lambda is read once, however many tasks name it, and through
	// the cache Schedule reads it through (lambdaCache: a call costs no
	// round trip for a lambda read within its TTL).
	type lambdaRead struct {
		l   store.Lambda
		err error
	}
	lambdas := map[string]lambdaRead{}
	getLambda := func(ctx context.Context, ns, name string) (store.Lambda, error) {
		if r, ok := lambdas[name]; ok {
			return r.l, r.err
		}
		l, err := f.cachedLambda(ctx, ns, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return l, err
		}
		lambdas[name] = lambdaRead{l, err}
		return l, err
	}
	tasks := make([]store.NewTask, len(reqs))
	for i, r := range reqs {
		nt, err := f.newTask(ctx, r, getLambda)
		if err != nil {
			return nil, &indexError{index: i, err: err}
		}
		tasks[i] = nt
	}
	type scheduleSpan struct {
		ctx  context.Context
		span trace.Span
	}
	spans := make([]scheduleSpan, len(tasks))
	for i := range tasks {
		sctx, span := startSchedule(ctx, tasks[i].Lambda, h)
		tasks[i].TraceParent = scheduleTraceParent(sctx, span, h)
		spans[i] = scheduleSpan{sctx, span}
	}
	stored := time.Now()
	res, err := f.cfg.Store.ScheduleBatch(ctx, tasks)
	for i, s := range spans {
		if err != nil || i >= len(res) {
			endSchedule(s.ctx, s.span, store.Task{}, false, stored, cmp.Or(err, errors.New("no result")))
			continue
		}
		endSchedule(s.ctx, s.span, res[i].Task, res[i].Deduplicated, stored, nil)
	}
	var be *store.BatchError
	if errors.As(err, &be) {
		return nil, &indexError{index: be.Index, err: be.Err}
	}
	return res, err
}

// restBatchTask is one task of POST /v1/lambdas/{name}/tasks:batch. The
// payload is one of payload (base64, as protojson has bytes), payloadText
// (a string sent as is) or payloadJson (any JSON value, sent as its
// compact text).
type restBatchTask struct {
	Payload     []byte          `json:"payload"`
	PayloadText *string         `json:"payloadText"`
	PayloadJSON json.RawMessage `json:"payloadJson"`
	Priority    int32           `json:"priority"`
	At          string          `json:"at"`
	Key         string          `json:"key"`
	Collection  string          `json:"collection"`
}

func (f *Frontend) restScheduleBatch(w http.ResponseWriter, r *http.Request) {
	// base64 and JSON escaping grow payloads: room for twice the cap.
	body, err := readBody(w, r, "batch", 2*f.cfg.MaxBatchBytes+1<<20)
	if err != nil {
		writeError(w, r, err)
		return
	}
	reqs, err := f.batchFromJSON(r.PathValue("name"), body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := f.scheduleBatch(r.Context(), reqs, r.Header)
	if err != nil {
		writeError(w, r, err)
		return
	}
	status := http.StatusOK
	for _, t := range res {
		if !t.Deduplicated {
			status = http.StatusCreated
		}
	}
	writeProto(w, status, batchResponse(res))
}

const batchExample = `[{"payloadJson":{"name":"Ada"}},{"payloadText":"hi","priority":5,"at":"30s","key":"k1","collection":"c"}]`

func (f *Frontend) batchFromJSON(lambda string, body []byte) ([]*atfv1.ScheduleRequest, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, invalidf("the body is not a JSON array of tasks (%v): send e.g. %s", err, batchExample)
	}
	now := f.cfg.Now()
	reqs := make([]*atfv1.ScheduleRequest, len(items))
	for i, raw := range items {
		var t restBatchTask
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			return nil, &indexError{index: i, err: invalidf("not a task: %v; fields are payload (base64), payloadText, payloadJson, priority, at, key, collection", err)}
		}
		req := &atfv1.ScheduleRequest{Lambda: lambda, Priority: t.Priority, Key: t.Key, Collection: t.Collection}
		var set []string
		if t.Payload != nil {
			req.Payload, set = t.Payload, append(set, "payload")
		}
		if t.PayloadText != nil {
			req.Payload, set = []byte(*t.PayloadText), append(set, "payloadText")
		}
		if len(t.PayloadJSON) > 0 && string(t.PayloadJSON) != "null" {
			var buf bytes.Buffer
			if err := json.Compact(&buf, t.PayloadJSON); err != nil {
				return nil, &indexError{index: i, err: invalidf("payloadJson: %v", err)}
			}
			req.Payload, set = buf.Bytes(), append(set, "payloadJson")
		}
		if len(set) > 1 {
			return nil, &indexError{index: i, err: invalidf("give one payload, not %s", strings.Join(set, " and "))}
		}
		if t.At != "" {
			at, err := parseAt(t.At, now)
			if err != nil {
				return nil, &indexError{index: i, err: err}
			}
			req.ExecuteAt = timestamppb.New(at)
		}
		reqs[i] = req
	}
	return reqs, nil
}

// restDeadLetters lists a lambda's dead letters: FATAL_FAILURE tasks whose
// attempts are spent, newest first.
func (f *Frontend) restDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &atfv1.ListTasksRequest{
		Lambda:      r.PathValue("name"),
		Collection:  q.Get("collection"),
		PageToken:   q.Get("page_token"),
		DeadLetters: true,
	}
	if v := q.Get("page_size"); v != "" {
		var n int32
		if _, err := fmt.Sscan(v, &n); err != nil {
			writeError(w, r, invalidf("page_size=%q is not a whole number", v))
			return
		}
		req.PageSize = n
	}
	res, err := f.ListTasks(r.Context(), req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, res)
}
