// Package redistest gives tests a real redis-server of their own.
//
// Each call starts a fresh server (see package embedded) on a free loopback
// port with its data in t.TempDir(), and t.Cleanup stops it. When
// redis-server is not installed the test is skipped, or fails when the
// environment says CI=true: CI must never pass by skipping.
package redistest

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/atfhq/atf/platform/embedded"
)

// Start starts a redis-server for t and returns a client for it. Both are
// closed by t.Cleanup.
func Start(t testing.TB) *redis.Client {
	t.Helper()
	srv := StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2}) // as atf's binary (openRedis)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// StartServer starts a redis-server for t and returns it, for tests that
// must stop, kill or restart it. t.Cleanup stops it and, when the test
// failed, logs the server's output.
func StartServer(t testing.TB) *embedded.Redis {
	t.Helper()
	return StartServerWith(t, embedded.Options{})
}

// StartServerWith is StartServer with options; an empty Dir is a new
// t.TempDir(). Tests that restart the server start it again with the same
// Dir and Addr.
func StartServerWith(t testing.TB, opts embedded.Options) *embedded.Redis {
	t.Helper()
	out := &SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	opts.Stdout, opts.Stderr = out, out
	srv, err := embedded.StartRedis(ctx, opts)
	if errors.Is(err, embedded.ErrNoRedisServer) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redistest: redis-server is required when CI=true: %v", err)
		}
		t.Skipf("redistest: skipping: redis-server binary not found on PATH (%v); install redis-server to run this test", err)
	}
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Logf("redistest: %v", err)
		}
		if t.Failed() {
			if s := strings.TrimSpace(out.String()); s != "" {
				t.Logf("redis-server output:\n%s", s)
			}
		}
	})
	return srv
}

// SyncBuffer collects a child process's output for a test: safe to write
// from the process's pipes and read from the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
