package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/atfhq/atf/platform/telemetry"
)

// startTelemetry installs the OpenTelemetry providers the OTEL_* environment
// asks for (see platform/telemetry); stop flushes what is pending.
func startTelemetry(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*telemetry.Telemetry, func(), error) {
	tel, err := telemetry.Setup(ctx, telemetry.Options{Getenv: getenv})
	if err != nil {
		return nil, nil, err
	}
	if tel.Tracing || tel.OTLPMetrics {
		logger.Info("OpenTelemetry export on", "traces", tel.Tracing, "metrics", tel.OTLPMetrics)
	}
	return tel, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Close(ctx); err != nil {
			logger.Warn("flushing telemetry failed", "err", err)
		}
	}, nil
}

// instrumentRedis adds Redis spans (when tracing is on: the sampler keeps
// only those inside a sampled trace) and connection pool metrics to rdb.
func instrumentRedis(rdb redis.UniversalClient, tel *telemetry.Telemetry, logger *slog.Logger) {
	if tel == nil {
		return
	}
	if tel.Tracing {
		if err := redisotel.InstrumentTracing(rdb, redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
			logger.Warn("redis tracing not installed", "err", err)
		}
	}
	if err := redisotel.InstrumentMetrics(rdb); err != nil {
		logger.Warn("redis metrics not installed", "err", err)
	}
}
