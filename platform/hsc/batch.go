package hsc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	"go.opentelemetry.io/otel/trace"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/tracectx"
)

// MaxResults is the most results one SetResults call may carry.
const MaxResults = 1024

// SetResults records several executions' outcomes, each as SetResult
// would, and answers each in order. The results are recorded together:
// the store writes results made at the same time in shared script calls.
func (h *HSC) SetResults(ctx context.Context, req *atfv1.SetResultsRequest) (*atfv1.SetResultsResponse, error) {
	rs := req.GetResults()
	if len(rs) > MaxResults {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%d results in one call; at most %d", len(rs), MaxResults))
	}
	answers := make([]*atfv1.SetResultAnswer, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			// Each result's span is a child of its own execute span, not
			// of the call's (which one of them made).
			rctx := ctx
			if sc := tracectx.Parse(r.GetExecutionTraceparent()); sc.IsValid() {
				rctx = trace.ContextWithRemoteSpanContext(ctx, sc)
			}
			res, err := h.SetResult(rctx, r)
			answers[i] = answerOf(res, err)
		})
	}
	wg.Wait()
	return &atfv1.SetResultsResponse{Answers: answers}, nil
}

// answerOf is a SetResult answer as an entry of SetResults.
func answerOf(res *atfv1.SetResultResponse, err error) *atfv1.SetResultAnswer {
	if err == nil {
		return &atfv1.SetResultAnswer{State: res.GetState()}
	}
	code := connect.CodeUnknown
	var ce *connect.Error
	if errors.As(err, &ce) {
		code = ce.Code()
		err = errors.New(ce.Message())
	}
	return &atfv1.SetResultAnswer{ErrorCode: code.String(), ErrorMessage: err.Error()}
}
