package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/atfhq/atf/runtime/sandbox"
)

func runServer(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("server", stderr)
	listenAddr := fs.String("listen", "127.0.0.1:8080", "address to serve Connect, gRPC and HTTP on")
	var rf redisFlags
	rf.register(fs, "Redis URL of the task store (required), e.g. redis://127.0.0.1:6379/0")
	rolesFlag := fs.String("roles", "frontend,consumer,controller,hsc", "roles this process runs")
	var tf timeoutFlags
	tf.register(fs)
	var lf logFlags
	lf.register(fs)
	var gf gcFlags
	gf.register(fs)
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if *rf.url == "" {
		return errors.New("--redis is required (or ATF_REDIS), e.g. --redis redis://127.0.0.1:6379/0")
	}
	if err := tf.validate(); err != nil {
		return err
	}
	roles, err := parseRoles(*rolesFlag)
	if err != nil {
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
	rdb, err := rf.open()
	if err != nil {
		return err
	}
	defer rdb.Close()
	var engine *sandbox.Engine
	if roles[roleFrontend] {
		// The frontend compiles uploads to validate them.
		engine, err = sandbox.New(ctx, sandbox.Config{CompilationCacheDir: filepath.Join(os.TempDir(), "atf-server-cache"), HostModules: hostModules})
		if err != nil {
			return err
		}
		defer engine.Close(context.Background())
	}
	p := newPlatform(platformConfig{rdb: rdb, roles: roles, timeouts: tf, engine: engine, logger: logger, tel: tel})
	ln, err := listen(*listenAddr)
	if err != nil {
		return err
	}
	var g actorGroup
	g.untilDone(ctx)
	p.actors(ctx, &g, ln, logger)
	fmt.Fprintf(stdout, "atf server listening on http://%s (roles %s)\n", ln.Addr(), *rolesFlag)
	return g.Run()
}
