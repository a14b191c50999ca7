package executor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// batchStatus answers SetResults (unless unimplemented) and SetResult:
// token 7 is refused as stale.
type batchStatus struct {
	unimplemented bool
	batches       atomic.Int64 // SetResults calls
	singles       atomic.Int64 // SetResult calls
	mu            sync.Mutex
	sizes         []int
}

func (s *batchStatus) Heartbeat(context.Context, *atfv1.HeartbeatRequest) (*atfv1.HeartbeatResponse, error) {
	return &atfv1.HeartbeatResponse{}, nil
}

func (s *batchStatus) SetResult(_ context.Context, req *atfv1.SetResultRequest) (*atfv1.SetResultResponse, error) {
	s.singles.Add(1)
	time.Sleep(time.Millisecond) // a round trip
	if req.GetFencingToken() == 7 {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("stale token"))
	}
	return &atfv1.SetResultResponse{State: atfv1.TaskState_TASK_STATE_SUCCESS}, nil
}

func (s *batchStatus) SetResults(_ context.Context, req *atfv1.SetResultsRequest) (*atfv1.SetResultsResponse, error) {
	if s.unimplemented {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("no SetResults"))
	}
	s.batches.Add(1)
	s.mu.Lock()
	s.sizes = append(s.sizes, len(req.GetResults()))
	s.mu.Unlock()
	time.Sleep(time.Millisecond) // a round trip: results queue meanwhile
	res := &atfv1.SetResultsResponse{}
	for _, r := range req.GetResults() {
		a := &atfv1.SetResultAnswer{State: atfv1.TaskState_TASK_STATE_SUCCESS}
		if r.GetFencingToken() == 7 {
			a = &atfv1.SetResultAnswer{ErrorCode: connect.CodeFailedPrecondition.String(), ErrorMessage: "stale token"}
		}
		res.Answers = append(res.Answers, a)
	}
	return res, nil
}

// TestResultsInBatches: results reported at the same time go in shared
// SetResults calls, and each reporter gets its own answer — a refused one
// as the Connect error SetResult would have returned. A server without
// SetResults gets one SetResult per result from then on.
func TestResultsInBatches(t *testing.T) {
	for _, unimplemented := range []bool{false, true} {
		st := &batchStatus{unimplemented: unimplemented}
		r := newResultSender(st)
		const n = 64
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				token := int64(1)
				if i%4 == 0 {
					token = 7
				}
				c := &resultCall{req: &atfv1.SetResultRequest{TaskId: "t", FencingToken: token, Outcome: atfv1.Outcome_OUTCOME_SUCCESS}}
				r.set(context.Background(), c)
				res, err := c.res, c.err
				switch {
				case token == 7 && connect.CodeOf(err) != connect.CodeFailedPrecondition:
					t.Errorf("result %d with a stale token: %v, want FailedPrecondition", i, err)
				case token == 1 && (err != nil || res.GetState() != atfv1.TaskState_TASK_STATE_SUCCESS):
					t.Errorf("result %d: %v, %v", i, res, err)
				}
			})
		}
		wg.Wait()
		if unimplemented {
			if st.singles.Load() != n || !r.single.Load() {
				t.Errorf("without SetResults: %d SetResult calls for %d results", st.singles.Load(), n)
			}
			continue
		}
		if b := st.batches.Load(); b == 0 || b+st.singles.Load() >= n {
			t.Errorf("%d SetResults and %d SetResult calls for %d results: nothing was batched", b, st.singles.Load(), n)
		}
		t.Logf("%d results in %d SetResults (sizes %v) and %d SetResult calls", n, st.batches.Load(), st.sizes, st.singles.Load())
	}
}
