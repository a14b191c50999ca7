package frontend

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// Handlers being written (issue 3); each moves to its own file when done.

func (f *Frontend) PauseLambda(context.Context, *atfv1.PauseLambdaRequest) (*atfv1.PauseLambdaResponse, error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("not yet"))
}

func (f *Frontend) ResumeLambda(context.Context, *atfv1.ResumeLambdaRequest) (*atfv1.ResumeLambdaResponse, error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("not yet"))
}

func (f *Frontend) DropLambda(context.Context, *atfv1.DropLambdaRequest) (*atfv1.DropLambdaResponse, error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("not yet"))
}

func (f *Frontend) SetSchedule(context.Context, *atfv1.SetScheduleRequest) (*atfv1.SetScheduleResponse, error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("not yet"))
}

func (f *Frontend) WatchTask(context.Context, *atfv1.WatchTaskRequest, *connect.ServerStream[atfv1.WatchTaskResponse]) error {
	return connect.NewError(connect.CodeUnimplemented, errors.New("not yet"))
}
