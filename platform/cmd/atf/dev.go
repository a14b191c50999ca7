package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/embedded"
	"github.com/atfhq/atf/platform/executor"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/runtime/sandbox"
)

func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	listenAddr := fs.String("listen", "127.0.0.1:8080", "address to serve Connect, gRPC and HTTP on")
	var rf redisFlags
	rf.register(fs, "Redis URL of the task store; empty: an embedded one (redis-server if on PATH, else in-memory)")
	dataDir := fs.String("data", defaultDataDir(), "directory for the embedded store's data and the compilation cache")
	examplesDir := fs.String("examples", "examples", "directory whose <name>/<name>.wasm modules are deployed at start; empty: none")
	slots := fs.Int("slots", 8, "tasks the built-in executor runs at once")
	var tf timeoutFlags
	tf.register(fs)
	var lf logFlags
	lf.register(fs)
	var gf gcFlags
	gf.register(fs)
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if err := tf.validate(); err != nil {
		return err
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
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("--data: %w", err)
	}

	rdb, stopRedis, err := devRedis(ctx, rf, filepath.Join(*dataDir, "redis"), logger)
	if err != nil {
		return err
	}
	defer stopRedis()
	defer rdb.Close()

	engine, err := sandbox.New(ctx, sandbox.Config{CompilationCacheDir: filepath.Join(*dataDir, "wasm-cache"), HostModules: hostModules, KeepInspected: true})
	if err != nil {
		return err
	}
	defer engine.Close(context.Background())

	roles := map[string]bool{roleFrontend: true, roleConsumer: true, roleController: true, roleHSC: true}
	p := newPlatform(platformConfig{rdb: rdb, roles: roles, timeouts: tf, engine: engine, logger: logger, tel: tel})
	if *examplesDir != "" {
		if err := deployExamples(ctx, p, *examplesDir, logger); err != nil {
			return err
		}
	}
	ln, err := listen(*listenAddr)
	if err != nil {
		return err
	}
	// The built-in executor calls the controller and the HSC in process:
	// same interfaces as over Connect, without the round trip.
	ex := executor.New(executor.Config{
		Controller:        p.controller,
		Status:            p.hsc,
		Host:              p.host,
		Runner:            engine,
		Logger:            logger,
		Slots:             *slots,
		HeartbeatInterval: tf.heartbeatInterval,
	})
	telemetry.ObserveRunning(ex.Running)
	var g actorGroup
	g.untilDone(ctx)
	p.actors(ctx, &g, ln, logger)
	fmt.Fprintf(stdout, "atf dev listening on http://%s\n", ln.Addr())
	g.add(ctx, ex.Run)
	return g.Run()
}

func defaultDataDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "atf", "dev")
	}
	return filepath.Join(os.TempDir(), "atf-dev")
}

// devRedis connects to url, or starts the embedded default: redis-server
// with its data in dir when it is on PATH, else miniredis in memory.
func devRedis(ctx context.Context, rf redisFlags, dir string, logger *slog.Logger) (redis.UniversalClient, func(), error) {
	if *rf.url != "" {
		rdb, err := rf.open()
		return rdb, func() {}, err
	}
	if *rf.cluster {
		return nil, nil, errors.New("--redis-cluster needs --redis: the embedded store is a single server")
	}
	srv, err := embedded.StartRedis(ctx, embedded.Options{Dir: dir})
	if err == nil {
		logger.Info("embedded redis-server started", "addr", srv.Addr(), "data", dir)
		rdb, err := openRedis(srv.URL())
		return rdb, func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Stop(stopCtx)
		}, err
	}
	if !errors.Is(err, embedded.ErrNoRedisServer) {
		return nil, nil, fmt.Errorf("start embedded redis-server: %w", err)
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("start in-memory store: %w", err)
	}
	logger.Warn("redis-server not on PATH: using an in-memory store; nothing survives exit (install redis-server or pass --redis)")
	return redis.NewClient(&redis.Options{Addr: mr.Addr()}), mr.Close, nil
}

// deployExamples deploys dir/<name>/<name>.wasm as lambda <name>, unless
// that module is already the lambda's current version.
func deployExamples(ctx context.Context, p *platform, dir string, logger *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		logger.Info("no examples to deploy", "dir", dir)
		return nil
	}
	if err != nil {
		return fmt.Errorf("--examples: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name(), e.Name()+".wasm")
		wasm, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		res, err := p.frontend.DeployLambdaIfChanged(ctx, &atfv1.DeployLambdaRequest{Name: e.Name(), Wasm: wasm})
		if err != nil {
			return fmt.Errorf("deploy example %s: %w", path, err)
		}
		logger.Info("example lambda ready", "lambda", res.GetName(), "version", res.GetVersion(), "sha256", res.GetSha256()[:12])
	}
	return nil
}
