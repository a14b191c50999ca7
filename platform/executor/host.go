package executor

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/runtime/hostmod"
)

// Host is the server's HostService as the executor calls it, for the
// atf_v1 functions kv_* and schedule; atfv1connect.HostServiceClient is
// one, and so is *hostsvc.Service in process.
type Host interface {
	GetValue(ctx context.Context, req *atfv1.GetValueRequest) (*atfv1.GetValueResponse, error)
	SetValue(ctx context.Context, req *atfv1.SetValueRequest) (*atfv1.SetValueResponse, error)
	DeleteValue(ctx context.Context, req *atfv1.DeleteValueRequest) (*atfv1.DeleteValueResponse, error)
	ScheduleFollowUp(ctx context.Context, req *atfv1.ScheduleFollowUpRequest) (*atfv1.ScheduleFollowUpResponse, error)
}

// DefaultCancelGrace is how long a cancelled task that reports progress
// may run on after its progress call answered "cancel requested", to stop
// cleanly, before it is aborted.
const DefaultCancelGrace = 500 * time.Millisecond

// guestState is what the atf_v1 functions of one running task share with
// the heartbeat loop.
type guestState struct {
	progress        atomic.Int32 // -1 until the module reports
	cancelRequested atomic.Bool  // set by a DIRECTIVE_CANCEL
	logs            logLines     // the module's log calls
}

// init readies a new g and returns it.
func (g *guestState) init() *guestState {
	g.progress.Store(-1)
	return g
}

// hostTask builds the atf_v1 view of r's task (sandbox.Job.Host) in
// r.host, and returns it. It lives in r, still zero, as do its Services
// and their Caller: no allocation per task for any of them (nor a copy
// of a whole hostmod.Task), only the two closures.
func (e *Executor) hostTask(r *running) *hostmod.Task {
	w, g, t := r.work, &r.guest, &r.host
	t.TaskID = w.GetTaskId()
	t.Namespace = w.GetNamespace()
	t.Lambda = w.GetLambda()
	t.AllowedHosts = w.GetAllowedHosts()
	t.Progress = func(p int) bool {
		g.progress.Store(int32(p))
		return g.cancelRequested.Load()
	}
	t.Log = func(level slog.Level, msg string) {
		g.logs.add(level, msg)
		e.logTask(context.Background(), level, w, "lambda log", "msg", msg)
	}
	// The lambda's max_log_bytes caps its log calls too, below hostmod's
	// own budget.
	if n := int(w.GetMaxLogBytes()); n > 0 && n < hostmod.DefaultMaxLogBytes {
		t.Limits.MaxLogBytes = n
	}
	if e.cfg.Host != nil {
		c := &r.caller
		c.TaskId, c.FencingToken, c.Namespace = w.GetTaskId(), w.GetFencingToken(), w.GetNamespace()
		r.services = hostServices{host: e.cfg.Host, caller: c}
		t.Services = &r.services
	}
	return t
}

// cancelTask aborts a cancelled task: at once, unless the module reports
// progress, in which case its next progress call answers "cancel
// requested" and it has CancelGrace to stop by itself.
func (e *Executor) cancelTask(r *running) {
	if r.guest.progress.Load() < 0 {
		r.cancel(errCancelled)
		return
	}
	if r.guest.cancelRequested.Swap(true) {
		return
	}
	time.AfterFunc(e.cfg.CancelGrace, func() { r.cancel(errCancelled) })
}

// hostServices implements hostmod.Services over Host for one task.
type hostServices struct {
	host   Host
	caller *atfv1.Caller
}

func (h hostServices) KVGet(ctx context.Context, key string) ([]byte, bool, error) {
	res, err := h.host.GetValue(ctx, &atfv1.GetValueRequest{Caller: h.caller, Key: key})
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, hostError(err)
	}
	return res.GetValue(), true, nil
}

func (h hostServices) KVSet(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	req := &atfv1.SetValueRequest{Caller: h.caller, Key: key, Value: value}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	_, err := h.host.SetValue(ctx, req)
	return hostError(err)
}

func (h hostServices) KVDelete(ctx context.Context, key string) (bool, error) {
	_, err := h.host.DeleteValue(ctx, &atfv1.DeleteValueRequest{Caller: h.caller, Key: key})
	if connect.CodeOf(err) == connect.CodeNotFound {
		return false, nil
	}
	return err == nil, hostError(err)
}

func (h hostServices) Schedule(ctx context.Context, f hostmod.FollowUp) (string, error) {
	req := &atfv1.ScheduleFollowUpRequest{Caller: h.caller, Lambda: f.Lambda, Payload: f.Payload, Key: f.Key}
	if f.Delay > 0 {
		req.Delay = durationpb.New(f.Delay)
	}
	res, err := h.host.ScheduleFollowUp(ctx, req)
	if err != nil {
		return "", hostError(err)
	}
	return res.GetTaskId(), nil
}

// hostError maps a HostService error to the code the guest sees.
func hostError(err error) error {
	if err == nil {
		return nil
	}
	switch connect.CodeOf(err) {
	case connect.CodeNotFound:
		return errors.Join(hostmod.ErrNotFound, err)
	case connect.CodeInvalidArgument:
		return errors.Join(hostmod.ErrInvalid, err)
	case connect.CodeResourceExhausted:
		return errors.Join(hostmod.ErrTooLarge, err)
	case connect.CodePermissionDenied, connect.CodeFailedPrecondition:
		return errors.Join(hostmod.ErrDenied, err)
	case connect.CodeDeadlineExceeded:
		return errors.Join(context.DeadlineExceeded, err)
	}
	return errors.Join(hostmod.ErrUnavailable, err)
}
