package executor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/autobatch"
)

// BatchStatus is the optional part of Status that takes several results
// in one call (atfv1connect's HeartbeatService client is one).
type BatchStatus interface {
	SetResults(ctx context.Context, req *atfv1.SetResultsRequest) (*atfv1.SetResultsResponse, error)
}

// resultSender reports results: those of tasks finishing together in one
// SetResults call when the Status takes them (over the network, one RPC
// for a batch instead of one per task), else one SetResult each — also
// once the server has answered SetResults Unimplemented (an older one).
type resultSender struct {
	status Status
	batch  BatchStatus // nil: one SetResult per result
	single atomic.Bool // the server has no SetResults
	calls  *autobatch.Batcher[*resultCall]
}

// resultCall is one result of a batch and, once sent, its answer.
type resultCall struct {
	req *atfv1.SetResultRequest
	res *atfv1.SetResultResponse
	err error
}

// resultTimeout bounds one SetResult or SetResults call.
const resultTimeout = 10 * time.Second

func newResultSender(status Status) *resultSender {
	r := &resultSender{status: status}
	r.batch, _ = status.(BatchStatus)
	r.calls = autobatch.New(r.send)
	return r
}

// set reports one result, c.req, as Status.SetResult would, and leaves
// the answer in c (the caller's: one allocation less per result).
func (r *resultSender) set(ctx context.Context, c *resultCall) {
	c.res, c.err = nil, nil
	if r.batch == nil || r.single.Load() {
		ctx, cancel := context.WithTimeout(ctx, resultTimeout)
		defer cancel()
		c.res, c.err = r.status.SetResult(ctx, c.req)
		return
	}
	if err := r.calls.Do(ctx, c); err != nil {
		c.err = err
	}
}

// send reports a batch of results. ctx is a caller's, without its
// cancellation (the batch is everyone's).
func (r *resultSender) send(ctx context.Context, calls []*resultCall) {
	ctx, cancel := context.WithTimeout(ctx, resultTimeout)
	defer cancel()
	if len(calls) == 1 || r.single.Load() {
		for _, c := range calls {
			c.res, c.err = r.status.SetResult(ctx, c.req)
		}
		return
	}
	req := &atfv1.SetResultsRequest{Results: make([]*atfv1.SetResultRequest, len(calls))}
	for i, c := range calls {
		req.Results[i] = c.req
	}
	res, err := r.batch.SetResults(ctx, req)
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		r.single.Store(true)
		r.send(ctx, calls)
		return
	}
	if err == nil && len(res.GetAnswers()) != len(calls) {
		err = connect.NewError(connect.CodeInternal, fmt.Errorf("SetResults answered %d results of %d", len(res.GetAnswers()), len(calls)))
	}
	for i, c := range calls {
		if err != nil {
			c.err = err
			continue
		}
		c.res, c.err = answer(res.GetAnswers()[i])
	}
}

// answer is what SetResult would have returned for an answer of SetResults.
func answer(a *atfv1.SetResultAnswer) (*atfv1.SetResultResponse, error) {
	if a.GetErrorCode() == "" {
		return &atfv1.SetResultResponse{State: a.GetState()}, nil
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(a.GetErrorCode())); err != nil {
		code = connect.CodeUnknown
	}
	return nil, connect.NewError(code, errors.New(a.GetErrorMessage()))
}
