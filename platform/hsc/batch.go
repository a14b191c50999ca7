package hsc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	"go.opentelemetry.io/otel/trace"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/tracectx"
)

// MaxResults is the most results one SetResults call may carry.
const MaxResults = 1024

// BatchStore is the optional part of Store that records several results
// in one call (*store.Store is one).
type BatchStore interface {
	SetResults(ctx context.Context, rs []store.Result) []store.ResultAnswer
}

// SetResults records several executions' outcomes, each as SetResult
// would, and answers each in order. Each result is checked and prepared on
// its own (concurrently when that takes a round trip: logs to keep, a
// retry's backoff to read), then all are written in one store call when
// the store takes batches — else each as SetResult, concurrently, which
// the store gathers into shared script calls.
func (h *HSC) SetResults(ctx context.Context, req *atfv1.SetResultsRequest) (*atfv1.SetResultsResponse, error) {
	rs := req.GetResults()
	if len(rs) > MaxResults {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%d results in one call; at most %d", len(rs), MaxResults))
	}
	answers := make([]*atfv1.SetResultAnswer, len(rs))
	bs, batches := h.cfg.Store.(BatchStore)
	var wg sync.WaitGroup
	if !batches {
		for i, r := range rs {
			wg.Go(func() {
				res, err := h.SetResult(resultContext(ctx, r), r)
				answers[i] = answerOf(res, err)
			})
		}
		wg.Wait()
		return &atfv1.SetResultsResponse{Answers: answers}, nil
	}
	type pending struct {
		span trace.Span
		r    store.Result
		err  error
	}
	ps := make([]pending, len(rs))
	for i, req := range rs {
		p := &ps[i]
		var rctx context.Context
		rctx, p.span = startSetResult(resultContext(ctx, req), req)
		if h.preparesWithoutIO(req) {
			p.r, p.err = h.prepareResult(rctx, req)
			continue
		}
		wg.Go(func() { p.r, p.err = h.prepareResult(rctx, req) })
	}
	wg.Wait()
	ready := make([]store.Result, 0, len(rs))
	idx := make([]int, 0, len(rs))
	for i := range ps {
		if ps[i].err == nil {
			ready, idx = append(ready, ps[i].r), append(idx, i)
		}
	}
	if len(ready) > 0 {
		for j, a := range bs.SetResults(ctx, ready) {
			p := &ps[idx[j]]
			if a.Err != nil {
				p.err = toConnect(a.Err)
				continue
			}
			answers[idx[j]] = &atfv1.SetResultAnswer{State: a.State}
		}
	}
	for i := range ps {
		if ps[i].err != nil {
			answers[i] = answerOf(nil, ps[i].err)
		}
		endSetResult(ps[i].span, ps[i].err)
	}
	return &atfv1.SetResultsResponse{Answers: answers}, nil
}

// resultContext is ctx for one result of a batch: its span is a child of
// its own execute span, not of the call's (which one of them made).
func resultContext(ctx context.Context, r *atfv1.SetResultRequest) context.Context {
	if sc := tracectx.Parse(r.GetExecutionTraceparent()); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
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
