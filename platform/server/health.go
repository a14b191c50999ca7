package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
)

// healthChecker answers gRPC health checks: the server as a whole ("") and
// each mounted role's service are SERVING while the process is ready
// (Ready: Redis reachable, roles running), NOT_SERVING when it is not;
// a service of a role this process does not run is NOT_FOUND.
type healthChecker struct {
	services []string
	ready    func(context.Context) error
}

func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !slices.Contains(h.services, req.Service) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q: this process serves %v", req.Service, h.services))
	}
	if h.ready != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := h.ready(ctx); err != nil {
			return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
		}
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// MountHealth mounts on mux what every atf process serves about itself:
// gRPC health (services are the roles it runs), GET /healthz (liveness),
// GET /readyz (ready(ctx) == nil; nil ready is always ready) and, when
// metrics is set, GET /metrics.
func MountHealth(mux *http.ServeMux, services []string, ready func(context.Context) error, metrics http.Handler) {
	mux.Handle(grpchealth.NewHandler(&healthChecker{services: services, ready: ready}))
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}
