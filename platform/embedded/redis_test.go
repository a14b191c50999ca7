package embedded

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func needRedis(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is required when CI=true")
		}
		t.Skip("redis-server not on PATH")
	}
}

// do sends one inline command and returns the first reply line.
func do(t *testing.T, addr, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	bulk := func(line string) string {
		if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
			line, _ = r.ReadString('\n')
		}
		return strings.TrimSpace(line)
	}
	if n, ok := strings.CutPrefix(strings.TrimSpace(line), "*"); ok {
		// An array of bulk strings: the values joined by spaces.
		var parts []string
		for range atoi(n) {
			l, _ := r.ReadString('\n')
			parts = append(parts, bulk(l))
		}
		return strings.Join(parts, " ")
	}
	return bulk(line)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestStartStop(t *testing.T) {
	needRedis(t)
	t.Parallel()
	ctx := context.Background()
	r, err := StartRedis(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") || r.URL() != "redis://"+r.Addr()+"/0" {
		t.Fatalf("Addr %q URL %q", r.Addr(), r.URL())
	}
	if got := do(t, r.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("PING: %q", got)
	}
	// No persistence without a data dir.
	if got := do(t, r.Addr(), "CONFIG GET save"); got != "save " {
		t.Fatalf("CONFIG GET save: %q", got)
	}
	if got := do(t, r.Addr(), "CONFIG GET appendonly"); got != "appendonly no" {
		t.Fatalf("CONFIG GET appendonly: %q", got)
	}
	if got := do(t, r.Addr(), "CONFIG GET bind"); got != "bind 127.0.0.1" {
		t.Fatalf("CONFIG GET bind: %q", got)
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("process still running after Stop")
	}
	if _, err := net.DialTimeout("tcp", r.Addr(), 200*time.Millisecond); err == nil {
		t.Fatal("server still answers after Stop")
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestDataDirSurvivesRestart(t *testing.T) {
	needRedis(t)
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	r, err := StartRedis(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := do(t, r.Addr(), "CONFIG GET appendonly"); got != "appendonly yes" {
		t.Fatalf("CONFIG GET appendonly: %q", got)
	}
	if got := do(t, r.Addr(), "SET k v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r, err = StartRedis(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop(ctx)
	if got := do(t, r.Addr(), "GET k"); got != "v" {
		t.Fatalf("GET after restart: %q", got)
	}
}

func TestKill(t *testing.T) {
	needRedis(t)
	t.Parallel()
	r, err := StartRedis(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.Kill()
	if _, err := net.DialTimeout("tcp", r.Addr(), 200*time.Millisecond); err == nil {
		t.Fatal("server still answers after Kill")
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatalf("Stop after Kill: %v", err)
	}
}

func TestNoRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartRedis(context.Background(), Options{})
	if !errors.Is(err, ErrNoRedisServer) || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNoRedisServer wrapping exec.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "redis-server") {
		t.Fatalf("message does not name the binary: %v", err)
	}
}

func TestStartFailureIsClear(t *testing.T) {
	needRedis(t)
	t.Parallel()
	// Take a port, then ask for it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = StartRedis(context.Background(), Options{Addr: l.Addr().String(), StartTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("start on a taken port: %v", err)
	}
}

// TestPortOfAnotherRedis: asked for a port another redis-server holds,
// StartRedis fails — that server answering PING must not pass for the one
// it started (two tests sharing a database, a cluster node joining
// another cluster, `atf dev` writing into someone else's Redis).
func TestPortOfAnotherRedis(t *testing.T) {
	needRedis(t)
	t.Parallel()
	other, err := StartRedis(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop(context.Background())
	_, err = StartRedis(context.Background(), Options{Addr: other.Addr(), StartTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "another redis-server's (pid "+strconv.Itoa(other.Pid())) {
		t.Fatalf("start on another redis-server's port: %v", err)
	}
	if got := do(t, other.Addr(), "PING"); got != "+PONG" {
		t.Fatalf("the other server after the failed start: %q", got)
	}
}
