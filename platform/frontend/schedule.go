package frontend

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// ParseCron parses a schedule's cron expression: standard 5 fields
// (minute hour day-of-month month day-of-week), descriptors such as @hourly
// or @every 10m, and a CRON_TZ=<zone> prefix; UTC otherwise.
func ParseCron(expr string) (cron.Schedule, error) {
	sc, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, invalidf("cron %q is not a schedule (%v): use 5 fields, minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\", or @hourly, @daily, @every 10m", expr, err)
	}
	return sc, nil
}

func scheduleToProto(sc store.Schedule, now time.Time) *atfv1.Schedule {
	p := &atfv1.Schedule{
		Cron:       sc.Cron,
		Payload:    sc.Payload,
		Priority:   int32(sc.Priority),
		Collection: sc.Collection,
	}
	if parsed, err := ParseCron(sc.Cron); err == nil {
		p.NextTick = ts(parsed.Next(now.UTC()))
	}
	return p
}

// SetSchedule sets or removes a lambda's periodic schedule.
func (f *Frontend) SetSchedule(ctx context.Context, req *atfv1.SetScheduleRequest) (*atfv1.SetScheduleResponse, error) {
	l, err := f.setSchedule(ctx, req)
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.SetScheduleResponse{Lambda: l}, nil
}

func (f *Frontend) setSchedule(ctx context.Context, req *atfv1.SetScheduleRequest) (*atfv1.Lambda, error) {
	ns := namespace(ctx)
	if err := validateName("lambda name", req.GetName()); err != nil {
		return nil, err
	}
	if _, err := f.cfg.Store.GetLambda(ctx, ns, req.GetName()); err != nil {
		return nil, err
	}
	if req.GetCron() == "" {
		if err := f.cfg.Store.DeleteSchedule(ctx, ns, req.GetName()); err != nil {
			return nil, err
		}
		return f.lambdaWithState(ctx, req.GetName())
	}
	// At most one tick a second: @every rounds shorter intervals up.
	if _, err := ParseCron(req.GetCron()); err != nil {
		return nil, err
	}
	if len(req.GetPayload()) > f.cfg.MaxPayloadBytes {
		return nil, &tooLargeError{what: "payload", limit: f.cfg.MaxPayloadBytes}
	}
	if err := validateTask(int(req.GetPriority()), "", req.GetCollection()); err != nil {
		return nil, err
	}
	err := f.cfg.Store.SetSchedule(ctx, store.Schedule{
		Namespace:  ns,
		Lambda:     req.GetName(),
		Cron:       req.GetCron(),
		Payload:    req.GetPayload(),
		Priority:   int(req.GetPriority()),
		Collection: req.GetCollection(),
	})
	if err != nil {
		return nil, err
	}
	return f.lambdaWithState(ctx, req.GetName())
}

// restSetSchedule: PUT /v1/lambdas/{name}/schedule?cron=...; the body is
// the payload of every task; query priority and collection.
func (f *Frontend) restSetSchedule(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &atfv1.SetScheduleRequest{Name: r.PathValue("name"), Cron: q.Get("cron"), Collection: q.Get("collection")}
	if req.Cron == "" {
		writeError(w, r, invalidf("cron is missing: e.g. ?cron=*/5+*+*+*+* (URL-encoded); DELETE the schedule to remove it"))
		return
	}
	if v := q.Get("priority"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, r, invalidf("priority=%q is not a whole number: use 0-9", v))
			return
		}
		req.Priority = int32(p)
	}
	var err error
	if req.Payload, err = readBody(w, r, "payload", f.cfg.MaxPayloadBytes); err != nil {
		writeError(w, r, err)
		return
	}
	l, err := f.setSchedule(r.Context(), req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, l)
}

func (f *Frontend) restDeleteSchedule(w http.ResponseWriter, r *http.Request) {
	l, err := f.setSchedule(r.Context(), &atfv1.SetScheduleRequest{Name: r.PathValue("name")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeProto(w, http.StatusOK, l)
}
