// Package server puts atf's roles on one HTTP port: Connect, gRPC and
// gRPC-Web for every service, the plain HTTP routes, gRPC health and
// reflection, and /healthz and /readyz.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"

	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
	"github.com/atfhq/atf/platform/frontend"
)

// Config says which roles the server exposes. Nil roles are not mounted.
type Config struct {
	Frontend   *frontend.Frontend
	Controller atfv1connect.ControllerServiceHandler
	HSC        atfv1connect.HeartbeatServiceHandler
	// Host serves the atf_v1 functions that need the platform (KV,
	// follow-up tasks) to executors.
	Host atfv1connect.HostServiceHandler
	// Ready reports whether the process can serve (Redis reachable, roles
	// running); nil means always ready.
	Ready func(ctx context.Context) error
	// ReadMaxBytes caps a Connect request. Default 96 MiB: a 64 MiB module
	// base64-encoded in JSON, with room to spare.
	ReadMaxBytes int
	Logger       *slog.Logger
	// Metrics, when set, is served on GET /metrics (telemetry's Prometheus
	// handler).
	Metrics http.Handler
}

// Handler returns the HTTP handler of every mounted role.
func Handler(cfg Config) http.Handler {
	if cfg.ReadMaxBytes <= 0 {
		cfg.ReadMaxBytes = 96 << 20
	}
	opts := []connect.HandlerOption{connect.WithReadMaxBytes(cfg.ReadMaxBytes)}
	// Server spans and rpc.server.* metrics on every RPC. Remote contexts
	// are trusted: a client's traceparent is the parent of the Schedule
	// span, which is what puts a task in its caller's trace.
	if ic, err := otelconnect.NewInterceptor(otelconnect.WithTrustRemote()); err == nil {
		opts = append(opts, connect.WithInterceptors(ic))
	}
	mux := http.NewServeMux()
	var services []string
	mount := func(name string, path string, h http.Handler) {
		services = append(services, name)
		mux.Handle(path, h)
	}
	if f := cfg.Frontend; f != nil {
		path, h := atfv1connect.NewLambdaServiceHandler(f, opts...)
		mount(atfv1connect.LambdaServiceName, path, h)
		path, h = atfv1connect.NewTaskServiceHandler(f, opts...)
		mount(atfv1connect.TaskServiceName, path, h)
		f.RegisterREST(mux)
	}
	if c := cfg.Controller; c != nil {
		path, h := atfv1connect.NewControllerServiceHandler(c, opts...)
		mount(atfv1connect.ControllerServiceName, path, h)
	}
	if c := cfg.HSC; c != nil {
		path, h := atfv1connect.NewHeartbeatServiceHandler(c, opts...)
		mount(atfv1connect.HeartbeatServiceName, path, h)
	}
	if h := cfg.Host; h != nil {
		path, handler := atfv1connect.NewHostServiceHandler(h, opts...)
		mount(atfv1connect.HostServiceName, path, handler)
	}
	reflector := grpcreflect.NewStaticReflector(services...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	MountHealth(mux, services, cfg.Ready, cfg.Metrics)
	return mux
}

// Serve serves h on ln (HTTP/1.1 and cleartext HTTP/2, so gRPC clients
// work without TLS) until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
