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
	"net"
	"os"
	"strconv"
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

// StartCluster starts a Redis Cluster of n master nodes — real redis-server
// processes in cluster mode, no replicas — on free loopback ports, shares
// the 16,384 hash slots out evenly, waits until every node reports the
// cluster ok, and returns a cluster client for it. t.Cleanup stops it all.
func StartCluster(t testing.TB, n int) *redis.ClusterClient {
	t.Helper()
	srvs := make([]*embedded.Redis, n)
	addrs := make([]string, n)
	for i := range n {
		srvs[i] = StartServerWith(t, embedded.Options{Cluster: true})
		addrs[i] = srvs[i].Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := make([]*redis.Client, n)
	for i, addr := range addrs {
		nodes[i] = redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
		defer nodes[i].Close()
		lo, hi := i*16384/n, (i+1)*16384/n-1
		if err := nodes[i].ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("redistest: cluster node %s: add slots %d-%d: %v", addr, lo, hi, err)
		}
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	for i := 1; i < n; i++ {
		if err := nodes[i].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatalf("redistest: cluster node %s: meet %s: %v", addrs[i], addrs[0], err)
		}
	}
	want := []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:" + strconv.Itoa(n)}
	for i, node := range nodes {
		var last string // the last CLUSTER INFO read, for the failure
		for {
			info, err := node.ClusterInfo(ctx).Result()
			ready := err == nil
			for _, w := range want {
				ready = ready && strings.Contains(info, w)
			}
			if ready {
				break
			}
			if err == nil {
				last = info
			}
			if ctx.Err() != nil {
				t.Fatalf("redistest: cluster node %s not ready (want %v): %v\nlast CLUSTER INFO:\n%s", addrs[i], want, err, last)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Protocol: 2})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// CPU is the CPU time (user and system, INFO cpu) the server rdb talks to
// has used so far: benchmarks read it before and after.
func CPU(t testing.TB, rdb redis.UniversalClient) time.Duration {
	t.Helper()
	info, err := rdb.Info(t.Context(), "cpu").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, l := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(l, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += time.Duration(f * float64(time.Second))
		}
	}
	return total
}
