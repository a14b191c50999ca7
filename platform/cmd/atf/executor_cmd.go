package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
	"github.com/atfhq/atf/platform/executor"
	"github.com/atfhq/atf/runtime/sandbox"
)

func runExecutor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("executor", stderr)
	serverURL := fs.String("server", "", "URL of the atf server running the controller and hsc roles (required), e.g. http://127.0.0.1:8080")
	slots := fs.Int("slots", 8, "tasks run at once")
	cacheDir := fs.String("cache-dir", filepath.Join(os.TempDir(), "atf-executor-cache"), "on-disk cache of compiled modules")
	var tf timeoutFlags
	tf.register(fs)
	var lf logFlags
	lf.register(fs)
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
	engine, err := sandbox.New(ctx, sandbox.Config{CompilationCacheDir: *cacheDir})
	if err != nil {
		return err
	}
	defer engine.Close(context.Background())
	client := &http.Client{}
	ex := executor.New(executor.Config{
		Controller:        atfv1connect.NewControllerServiceClient(client, *serverURL),
		Status:            atfv1connect.NewHeartbeatServiceClient(client, *serverURL),
		Runner:            engine,
		Logger:            logger,
		Slots:             *slots,
		HeartbeatInterval: tf.heartbeatInterval,
	})
	logger.Info("atf executor started", "server", *serverURL, "slots", *slots)
	return ex.Run(ctx)
}
