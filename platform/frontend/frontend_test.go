package frontend_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
	"github.com/atfhq/atf/platform/frontend"
	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/platform/store"
)

// testBundle is a frontend over a real redis-server, served over HTTP with
// its Connect services and REST routes, and clients for both.
type testBundle struct {
	ctx     context.Context
	store   *store.Store
	url     string
	tasks   atfv1connect.TaskServiceClient
	lambdas atfv1connect.LambdaServiceClient
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	t.Parallel()
	rdb := redistest.Start(t)
	st := store.New(rdb, store.Options{Partitions: 4})
	f := frontend.New(frontend.Config{Store: st})
	mux := http.NewServeMux()
	mux.Handle(atfv1connect.NewTaskServiceHandler(f))
	mux.Handle(atfv1connect.NewLambdaServiceHandler(f))
	f.RegisterREST(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b := &testBundle{
		ctx:     context.Background(),
		store:   st,
		url:     srv.URL,
		tasks:   atfv1connect.NewTaskServiceClient(srv.Client(), srv.URL),
		lambdas: atfv1connect.NewLambdaServiceClient(srv.Client(), srv.URL),
	}
	b.deploy(t, "echo", 3)
	return b
}

// deploy stores a lambda without a module check (the frontend's Inspector
// is not needed for tasks).
func (b *testBundle) deploy(t *testing.T, name string, attempts int) {
	t.Helper()
	if _, err := b.store.DeployLambda(b.ctx, store.Lambda{Namespace: frontend.DefaultNamespace, Name: name, SHA256: "00", MaxAttempts: attempts}); err != nil {
		t.Fatal(err)
	}
}

// do sends a REST request and returns the status and body.
func (b *testBundle) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(b.ctx, method, b.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

func decode[M proto.Message](t *testing.T, body string, m M) M {
	t.Helper()
	if err := protojson.Unmarshal([]byte(body), m); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return m
}

func wantCode(t *testing.T, err error, code connect.Code, substr string) {
	t.Helper()
	if connect.CodeOf(err) != code || !strings.Contains(err.Error(), substr) {
		t.Fatalf("err = %v, want %s containing %q", err, code, substr)
	}
}

func TestScheduleBatchConnect(t *testing.T) {
	b := setup(t)
	b.deploy(t, "other", 3)
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	res, err := b.tasks.ScheduleBatch(b.ctx, &atfv1.ScheduleBatchRequest{Tasks: []*atfv1.ScheduleRequest{
		{Lambda: "echo", Payload: []byte("a"), Key: "k"},
		{Lambda: "other", Payload: []byte("b"), Priority: 9, Collection: "c"},
		{Lambda: "echo", Payload: []byte("c"), Key: "k"},
		{Lambda: "echo", ExecuteAt: timestamppb.New(at)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := res.GetResults()
	if len(r) != 4 || r[0].GetDeduplicated() || !r[2].GetDeduplicated() || r[2].GetTask().GetId() != r[0].GetTask().GetId() {
		t.Fatalf("results = %v", r)
	}
	if r[1].GetTask().GetLambda() != "other" || r[1].GetTask().GetPriority() != 9 || r[1].GetTask().GetMaxAttempts() != 3 {
		t.Fatalf("results[1] = %v", r[1])
	}
	if r[3].GetTask().GetState() != atfv1.TaskState_TASK_STATE_NEW || !r[3].GetTask().GetExecuteAt().AsTime().Equal(at) {
		t.Fatalf("results[3] = %v", r[3])
	}

	// One bad task refuses the batch, named by index; nothing is stored.
	before := countTasks(t, b, "echo")
	cases := []struct {
		tasks []*atfv1.ScheduleRequest
		code  connect.Code
		msg   string
	}{
		{[]*atfv1.ScheduleRequest{{Lambda: "echo"}, {Lambda: "echo", Priority: 10}}, connect.CodeInvalidArgument, "tasks[1]: priority 10"},
		{[]*atfv1.ScheduleRequest{{Lambda: "echo"}, {Lambda: "echo"}, {Lambda: "nope"}}, connect.CodeNotFound, `tasks[2]: lambda "nope" not found`},
		{[]*atfv1.ScheduleRequest{{Lambda: "echo", Payload: make([]byte, 2<<20)}}, connect.CodeResourceExhausted, "tasks[0]: payload"},
		{[]*atfv1.ScheduleRequest{{Lambda: "echo", Collection: "bad name"}}, connect.CodeInvalidArgument, "tasks[0]: collection"},
		{nil, connect.CodeInvalidArgument, "empty"},
		{make([]*atfv1.ScheduleRequest, 1001), connect.CodeInvalidArgument, "at most 1000"},
	}
	for _, c := range cases {
		_, err := b.tasks.ScheduleBatch(b.ctx, &atfv1.ScheduleBatchRequest{Tasks: c.tasks})
		wantCode(t, err, c.code, c.msg)
	}
	if after := countTasks(t, b, "echo"); after != before {
		t.Fatalf("refused batches stored %d tasks", after-before)
	}
}

func countTasks(t *testing.T, b *testBundle, lambda string) int {
	t.Helper()
	res, err := b.tasks.ListTasks(b.ctx, &atfv1.ListTasksRequest{Lambda: lambda, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.GetTasks())
}

func TestScheduleBatchREST(t *testing.T) {
	b := setup(t)
	status, body := b.do(t, "POST", "/v1/lambdas/echo/tasks:batch",
		`[{"payloadJson": {"name": "Ada"}}, {"payloadText": "hi", "priority": 5, "at": "30s", "key": "k1", "collection": "c"}, {"payload": "eA=="}]`)
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, body)
	}
	res := decode(t, body, &atfv1.ScheduleBatchResponse{})
	if len(res.GetResults()) != 3 {
		t.Fatalf("results: %s", body)
	}
	payloads := []string{`{"name":"Ada"}`, "hi", "x"}
	for i, r := range res.GetResults() {
		got, err := b.store.GetTask(b.ctx, frontend.DefaultNamespace, r.GetTask().GetId())
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Payload) != payloads[i] {
			t.Errorf("results[%d] payload %q, want %q", i, got.Payload, payloads[i])
		}
	}
	if tk := res.GetResults()[1].GetTask(); tk.GetState() != atfv1.TaskState_TASK_STATE_NEW || tk.GetPriority() != 5 || tk.GetKey() != "k1" || tk.GetCollection() != "c" {
		t.Errorf("results[1] = %v", tk)
	}
	// The same keyed task again: 200, deduplicated.
	status, body = b.do(t, "POST", "/v1/lambdas/echo/tasks:batch", `[{"key": "k1"}]`)
	if status != http.StatusOK || !strings.Contains(body, `"deduplicated":true`) {
		t.Fatalf("again: %d %s", status, body)
	}
	for _, c := range []struct {
		body   string
		status int
		msg    string
	}{
		{`{"payload": "x"}`, 400, "JSON array"},
		{`[{}, {"pyload": "x"}]`, 400, `tasks[1]: not a task`},
		{`[{"payloadText": "a", "payloadJson": 1}]`, 400, "tasks[0]: give one payload"},
		{`[{}, {}, {"at": "soon"}]`, 400, "tasks[2]: at="},
		{`[{"priority": 11}]`, 400, "tasks[0]: priority 11"},
	} {
		status, body := b.do(t, "POST", "/v1/lambdas/echo/tasks:batch", c.body)
		if status != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %s, want %d with %q", c.body, status, body, c.status, c.msg)
		}
	}
	if status, body := b.do(t, "POST", "/v1/lambdas/nope/tasks:batch", `[{}]`); status != 404 {
		t.Errorf("unknown lambda: %d %s", status, body)
	}
}

func TestDeadLetters(t *testing.T) {
	b := setup(t)
	b.deploy(t, "once", 1)
	dead := runToResult(t, b, "once", atfv1.Outcome_OUTCOME_RETRY)
	runToResult(t, b, "once", atfv1.Outcome_OUTCOME_FATAL) // failed for good, attempts left: not a dead letter
	runToResult(t, b, "once", atfv1.Outcome_OUTCOME_SUCCESS)

	res, err := b.tasks.ListTasks(b.ctx, &atfv1.ListTasksRequest{Lambda: "once", DeadLetters: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetTasks()) != 1 || res.GetTasks()[0].GetId() != dead {
		t.Fatalf("dead letters = %v, want %s", res.GetTasks(), dead)
	}
	status, body := b.do(t, "GET", "/v1/lambdas/once/dead-letters", "")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	list := decode(t, body, &atfv1.ListTasksResponse{})
	if len(list.GetTasks()) != 1 || list.GetTasks()[0].GetId() != dead || !list.GetTasks()[0].GetError().GetAttemptsExhausted() {
		t.Fatalf("GET dead-letters = %s", body)
	}
	_, err = b.tasks.ListTasks(b.ctx, &atfv1.ListTasksRequest{Lambda: "once", DeadLetters: true, State: atfv1.TaskState_TASK_STATE_SUCCESS})
	wantCode(t, err, connect.CodeInvalidArgument, "deadLetters")
	// Retried, it leaves the dead letters.
	if _, err := b.tasks.RetryTask(b.ctx, &atfv1.RetryTaskRequest{Id: dead}); err != nil {
		t.Fatal(err)
	}
	if _, body := b.do(t, "GET", "/v1/lambdas/once/dead-letters", ""); strings.Contains(body, dead) {
		t.Fatalf("retried task still listed: %s", body)
	}
	// Its push back to the queue is an atf.enqueue span in its trace,
	// under its atf.schedule span.
	var retried []string
	for _, s := range taskSpans("atf.enqueue", dead) {
		if attr(s, "atf.enqueue.reason") == "manual_retry" {
			retried = append(retried, s.Parent().SpanID().String())
		}
	}
	sched := taskSpans("atf.schedule", dead)
	if len(retried) != 1 || len(sched) != 1 || retried[0] != sched[0].SpanContext().SpanID().String() {
		t.Errorf("retry's atf.enqueue spans under %v, want one under atf.schedule", retried)
	}
}

// runToResult schedules a task of lambda, claims it and records outcome,
// as an executor would.
func runToResult(t *testing.T, b *testBundle, lambda string, outcome atfv1.Outcome) string {
	t.Helper()
	res, err := b.tasks.Schedule(b.ctx, &atfv1.ScheduleRequest{Lambda: lambda})
	if err != nil {
		t.Fatal(err)
	}
	id := res.GetTask().GetId()
	claimed, err := b.store.Claim(b.ctx, []store.ClaimRequest{{TaskID: id, LambdaVersion: 1}}, time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim %s: %v %v", id, claimed, err)
	}
	if _, err := b.store.SetResult(b.ctx, store.Result{TaskID: id, Token: claimed[0].Token, Outcome: outcome,
		Error: &atfv1.TaskError{Kind: atfv1.ErrorKind_ERROR_KIND_EXIT, Message: "exit"}}); err != nil {
		t.Fatal(err)
	}
	return id
}

// lambdaReads counts the HGETALLs of lambda hashes a client sends.
type lambdaReads struct{ n atomic.Int64 }

func (l *lambdaReads) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *lambdaReads) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); cmd.Name() == "hgetall" && len(args) == 2 && strings.Contains(fmt.Sprint(args[1]), ":lambda:") {
			l.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (l *lambdaReads) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestScheduleBatchReadsLambdaThroughCache: ScheduleBatch calls read their
// lambda through the frontend's cache, as Schedule does: one read for
// several calls within its TTL, not one per call.
func TestScheduleBatchReadsLambdaThroughCache(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t)
	reads := &lambdaReads{}
	rdb.AddHook(reads)
	st := store.New(rdb, store.Options{Partitions: 4})
	if _, err := st.DeployLambda(t.Context(), store.Lambda{Namespace: frontend.DefaultNamespace, Name: "echo", SHA256: "00", MaxAttempts: 3}); err != nil {
		t.Fatal(err)
	}
	f := frontend.New(frontend.Config{Store: st})
	for range 5 {
		req := &atfv1.ScheduleBatchRequest{Tasks: []*atfv1.ScheduleRequest{{Lambda: "echo"}, {Lambda: "echo"}}}
		if _, err := f.ScheduleBatch(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Schedule(t.Context(), &atfv1.ScheduleRequest{Lambda: "echo"}); err != nil {
		t.Fatal(err)
	}
	if n := reads.n.Load(); n != 1 {
		t.Fatalf("%d reads of the lambda for five batches and a task, want 1", n)
	}
}
