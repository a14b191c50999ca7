package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"

	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
	"github.com/atfhq/atf/platform/executor"
	"github.com/atfhq/atf/platform/server"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/runtime/sandbox"
)

func runExecutor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("executor", stderr)
	serverURL := fs.String("server", "", "URL of the atf server running the controller and hsc roles (required), e.g. http://127.0.0.1:8080")
	slots := fs.Int("slots", 8, "tasks run at once")
	executionLog := fs.String("execution-log", "", "append a line to this file as each execution starts and ends (for audits)")
	cacheDir := fs.String("cache-dir", filepath.Join(os.TempDir(), "atf-executor-cache"), "on-disk cache of compiled modules")
	healthListen := fs.String("health-listen", "", "address to serve /healthz, /readyz, /metrics and gRPC health on; empty: none")
	var tf timeoutFlags
	tf.register(fs)
	var lf logFlags
	lf.register(fs)
	var gf gcFlags
	gf.register(fs)
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if *serverURL == "" {
		return errors.New("--server is required (or ATF_SERVER), e.g. --server http://127.0.0.1:8080")
	}
	if !strings.HasPrefix(*serverURL, "http://") && !strings.HasPrefix(*serverURL, "https://") {
		return errors.New("--server must be an http:// or https:// URL")
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	defer gf.start(ctx, getenv)()
	tel, stopTelemetry, err := startTelemetry(ctx, getenv, logger)
	if err != nil {
		return err
	}
	defer stopTelemetry()
	engine, err := sandbox.New(ctx, sandbox.Config{CompilationCacheDir: *cacheDir, HostModules: hostModules})
	if err != nil {
		return err
	}
	defer engine.Close(context.Background())
	var audit io.Writer
	if *executionLog != "" {
		f, err := os.OpenFile(*executionLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("--execution-log: %w", err)
		}
		defer f.Close()
		audit = f
	}
	client := serverClient(*serverURL)
	var clientOpts []connect.ClientOption
	if ic, err := otelconnect.NewInterceptor(); err == nil {
		clientOpts = append(clientOpts, connect.WithInterceptors(ic))
	}
	ex := executor.New(executor.Config{
		Controller:        atfv1connect.NewControllerServiceClient(client, *serverURL, clientOpts...),
		Status:            atfv1connect.NewHeartbeatServiceClient(client, *serverURL, clientOpts...),
		Host:              atfv1connect.NewHostServiceClient(client, *serverURL, clientOpts...),
		Runner:            engine,
		Logger:            logger,
		Slots:             *slots,
		HeartbeatInterval: tf.heartbeatInterval,
		ExecutionLog:      audit,
	})
	telemetry.ObserveRunning(ex.Running)
	logger.Info("atf executor started", "server", *serverURL, "slots", *slots)
	if *healthListen == "" {
		return ex.Run(ctx)
	}
	ln, err := listen(*healthListen)
	if err != nil {
		return fmt.Errorf("--health-listen: %w", err)
	}
	mux := http.NewServeMux()
	server.MountHealth(mux, []string{executorHealthService}, serverReady(client, *serverURL), tel.MetricsHandler())
	fmt.Fprintf(stdout, "atf executor health on http://%s\n", ln.Addr())
	var g actorGroup
	g.untilDone(ctx)
	g.add(ctx, func(ctx context.Context) error { return server.Serve(ctx, ln, mux, logger) })
	g.add(ctx, ex.Run)
	return g.Run()
}

// serverClient is the HTTP client an executor reaches its server with. An
// http:// server is spoken to in HTTP/2 without TLS (h2c, which the server
// accepts beside HTTP/1.1): the executor's RPCs — long polls, a result per
// task, heartbeats — share one connection instead of each taking one (the
// default transport keeps two idle connections per host, so an executor
// busier than that opened and closed a TCP connection per RPC). An
// https:// server gets HTTP/2 when its TLS handshake offers it.
func serverClient(serverURL string) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64 // HTTP/1.1 over TLS, when the server offers no HTTP/2
	if strings.HasPrefix(serverURL, "http://") {
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		t.Protocols = &protocols
	}
	return &http.Client{Transport: t}
}

// executorHealthService is the gRPC health service name of an executor.
const executorHealthService = "atf.v1.Executor"

// serverReady is an executor's readiness: the server it takes work from
// answers its own /readyz.
func serverReady(client *http.Client, serverURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(serverURL, "/")+"/readyz", nil)
		if err != nil {
			return err
		}
		res, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("server %s: %w", serverURL, err)
		}
		defer res.Body.Close()
		_, _ = io.Copy(io.Discard, res.Body)
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("server %s is not ready: %s", serverURL, res.Status)
		}
		return nil
	}
}
