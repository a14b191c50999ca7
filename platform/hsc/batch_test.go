package hsc

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// resultStore records results; token 7 is stale, task "gone" is unknown.
type resultStore struct {
	Store
	mu  sync.Mutex
	got map[string]store.Result
}

func (s *resultStore) SetResult(_ context.Context, r store.Result) (atfv1.TaskState, error) {
	switch {
	case r.TaskID == "gone":
		return 0, fmt.Errorf("task gone: %w", store.ErrNotFound)
	case r.Token == 7:
		return 0, fmt.Errorf("token 7: %w", store.ErrClaimLost)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[r.TaskID] = r
	return atfv1.TaskState_TASK_STATE_SUCCESS, nil
}

// TestSetResults: each result of a batch is judged on its own, as
// SetResult would judge it, and answered in order — with a store that
// takes batches (one call for all of them) and with one that does not.
func TestSetResults(t *testing.T) {
	t.Run("one call", func(t *testing.T) {
		st := &batchStore{resultStore: resultStore{got: map[string]store.Result{}}}
		testSetResults(t, st, &st.resultStore)
		if st.calls != 1 || st.results != 5 { // "d" has no outcome: refused before the store
			t.Errorf("%d store calls for %d results, want 1 for 5", st.calls, st.results)
		}
	})
	t.Run("a call each", func(t *testing.T) {
		st := &resultStore{got: map[string]store.Result{}}
		testSetResults(t, st, st)
	})
}

// batchStore is resultStore taking batches.
type batchStore struct {
	resultStore
	calls, results int
}

func (s *batchStore) SetResults(ctx context.Context, rs []store.Result) []store.ResultAnswer {
	s.calls++
	s.results += len(rs)
	out := make([]store.ResultAnswer, len(rs))
	for i, r := range rs {
		out[i].State, out[i].Err = s.SetResult(ctx, r)
	}
	return out
}

func testSetResults(t *testing.T, s Store, st *resultStore) {
	h := New(Config{Store: s})
	ok := func(id string) *atfv1.SetResultRequest {
		return &atfv1.SetResultRequest{TaskId: id, FencingToken: 1, Outcome: atfv1.Outcome_OUTCOME_SUCCESS, Output: []byte(id)}
	}
	reqs := []*atfv1.SetResultRequest{
		ok("a"),
		{TaskId: "b", FencingToken: 7, Outcome: atfv1.Outcome_OUTCOME_SUCCESS},
		ok("c"),
		{TaskId: "d", FencingToken: 1}, // no outcome
		{TaskId: "gone", FencingToken: 1, Outcome: atfv1.Outcome_OUTCOME_FATAL},
		ok("e"),
	}
	res, err := h.SetResults(t.Context(), &atfv1.SetResultsRequest{Results: reqs})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		state atfv1.TaskState
		code  string
	}{
		{atfv1.TaskState_TASK_STATE_SUCCESS, ""},
		{0, connect.CodeFailedPrecondition.String()},
		{atfv1.TaskState_TASK_STATE_SUCCESS, ""},
		{0, connect.CodeInvalidArgument.String()},
		{0, connect.CodeNotFound.String()},
		{atfv1.TaskState_TASK_STATE_SUCCESS, ""},
	}
	if len(res.GetAnswers()) != len(want) {
		t.Fatalf("%d answers for %d results", len(res.GetAnswers()), len(want))
	}
	for i, a := range res.GetAnswers() {
		if a.GetState() != want[i].state || a.GetErrorCode() != want[i].code || (a.GetErrorCode() != "") != (a.GetErrorMessage() != "") {
			t.Errorf("answer %d = %v, want state %s code %q", i, a, want[i].state, want[i].code)
		}
	}
	for _, id := range []string{"a", "c", "e"} {
		if r, ok := st.got[id]; !ok || string(r.Output) != id {
			t.Errorf("result of %s recorded as %+v", id, r)
		}
	}
	if len(st.got) != 3 {
		t.Errorf("%d results recorded, want 3", len(st.got))
	}

	tooMany := &atfv1.SetResultsRequest{Results: make([]*atfv1.SetResultRequest, MaxResults+1)}
	if _, err := h.SetResults(t.Context(), tooMany); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("SetResults of %d: %v, want InvalidArgument", MaxResults+1, err)
	}
}
