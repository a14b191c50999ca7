package frontend

import (
	"context"
	"net/http"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// PauseLambda pauses a lambda or one collection of it.
func (f *Frontend) PauseLambda(ctx context.Context, req *atfv1.PauseLambdaRequest) (*atfv1.PauseLambdaResponse, error) {
	l, err := f.pause(ctx, req.GetName(), req.GetCollection())
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.PauseLambdaResponse{Lambda: l}, nil
}

func (f *Frontend) pause(ctx context.Context, name, collection string) (*atfv1.Lambda, error) {
	if err := validateGate(name, collection); err != nil {
		return nil, err
	}
	if err := f.cfg.Store.Pause(ctx, namespace(ctx), name, collection); err != nil {
		return nil, err
	}
	return f.lambdaWithState(ctx, name)
}

// ResumeLambda lifts a pause and enqueues the tasks it held.
func (f *Frontend) ResumeLambda(ctx context.Context, req *atfv1.ResumeLambdaRequest) (*atfv1.ResumeLambdaResponse, error) {
	res, err := f.resume(ctx, req.GetName(), req.GetCollection())
	if err != nil {
		return nil, toConnect(err)
	}
	return res, nil
}

func (f *Frontend) resume(ctx context.Context, name, collection string) (*atfv1.ResumeLambdaResponse, error) {
	if err := validateGate(name, collection); err != nil {
		return nil, err
	}
	ns := namespace(ctx)
	if _, err := f.cfg.Store.GetLambda(ctx, ns, name); err != nil {
		return nil, err
	}
	start := time.Now()
	n, err := f.cfg.Store.ResumeFunc(ctx, ns, name, collection, func(ctx context.Context, tasks []store.Enqueued) {
		resumeEnqueued(ctx, tasks, start)
		start = time.Now()
	})
	if err != nil {
		return nil, err
	}
	l, err := f.lambdaWithState(ctx, name)
	if err != nil {
		return nil, err
	}
	return &atfv1.ResumeLambdaResponse{Lambda: l, Resumed: int64(n)}, nil
}

// DropLambda cancels the waiting tasks of a lambda or one collection of
// it. It works for a deleted lambda too, whose tasks stay behind.
func (f *Frontend) DropLambda(ctx context.Context, req *atfv1.DropLambdaRequest) (*atfv1.DropLambdaResponse, error) {
	res, err := f.drop(ctx, req.GetName(), req.GetCollection())
	if err != nil {
		return nil, toConnect(err)
	}
	return res, nil
}

func (f *Frontend) drop(ctx context.Context, name, collection string) (*atfv1.DropLambdaResponse, error) {
	if err := validateGate(name, collection); err != nil {
		return nil, err
	}
	n, err := f.cfg.Store.Drop(ctx, namespace(ctx), name, collection)
	if err != nil {
		return nil, err
	}
	return &atfv1.DropLambdaResponse{Cancelled: int64(n)}, nil
}

func validateGate(name, collection string) error {
	if err := validateName("lambda name", name); err != nil {
		return err
	}
	if collection != "" {
		return validateName("collection", collection)
	}
	return nil
}

func (f *Frontend) restPause(w http.ResponseWriter, r *http.Request) {
	l, err := f.pause(r.Context(), r.PathValue("name"), r.URL.Query().Get("collection"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, l)
}

func (f *Frontend) restResume(w http.ResponseWriter, r *http.Request) {
	res, err := f.resume(r.Context(), r.PathValue("name"), r.URL.Query().Get("collection"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, res)
}

func (f *Frontend) restDrop(w http.ResponseWriter, r *http.Request) {
	res, err := f.drop(r.Context(), r.PathValue("name"), r.URL.Query().Get("collection"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, res)
}

// lambdaWithState reads a lambda with its gate and schedule.
func (f *Frontend) lambdaWithState(ctx context.Context, name string) (*atfv1.Lambda, error) {
	l, err := f.cfg.Store.GetLambda(ctx, namespace(ctx), name)
	if err != nil {
		return nil, err
	}
	pl, err := f.lambdaProtos(ctx, l)
	if err != nil {
		return nil, err
	}
	return pl[0], nil
}

// lambdaProtos are the Lambdas a client sees: each with its gate and its
// schedule (one more round trip for all of them).
func (f *Frontend) lambdaProtos(ctx context.Context, ls ...store.Lambda) ([]*atfv1.Lambda, error) {
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = l.Name
	}
	states, err := f.cfg.Store.LambdaStates(ctx, namespace(ctx), names)
	if err != nil {
		return nil, err
	}
	out := make([]*atfv1.Lambda, len(ls))
	for i, l := range ls {
		p := lambdaToProto(l)
		p.Paused = states[i].Gate.Paused
		p.PausedCollections = states[i].Gate.Collections
		if sc := states[i].Schedule; sc != nil {
			p.Schedule = scheduleToProto(*sc, f.cfg.Now())
		}
		out[i] = p
	}
	return out, nil
}

func (f *Frontend) writeLambda(w http.ResponseWriter, r *http.Request, l store.Lambda) {
	pl, err := f.lambdaProtos(r.Context(), l)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, pl[0])
}
