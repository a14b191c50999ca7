// Package embedded runs a redis-server as a child process: the store of
// `atf dev` and of the tests that need a real Redis.
//
// The server binds 127.0.0.1 only. Without a data directory it keeps
// nothing on disk (`--save ""`, no AOF); with one it writes an append-only
// file there, so `atf dev --data DIR` survives restarts. On Linux the child
// is killed when the process that started it dies (Pdeathsig).
//
// When redis-server is not on PATH, StartRedis fails with ErrNoRedisServer
// (which wraps exec.ErrNotFound); `atf dev` falls back to miniredis then.
package embedded

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoRedisServer is returned by StartRedis when no redis-server binary is
// found. errors.Is(err, exec.ErrNotFound) holds too.
var ErrNoRedisServer = fmt.Errorf("embedded: redis-server is not on PATH: %w", exec.ErrNotFound)

// Options configures StartRedis. Zero fields take the defaults documented
// on each.
type Options struct {
	// Dir is the data directory. Empty: nothing is persisted. Set: the
	// server runs with `appendonly yes` and `dir` = Dir (created if
	// missing).
	Dir string
	// AppendFsync is the appendfsync policy when Dir is set: "always",
	// "everysec" (default) or "no".
	AppendFsync string
	// Addr is the host:port to listen on. Default: 127.0.0.1 and a free
	// port. Only loopback hosts make sense; the server is not protected.
	Addr string
	// Binary is the redis-server executable. Default: "redis-server" looked
	// up on PATH.
	Binary string
	// Stdout and Stderr receive the server's output. Default: discarded
	// (the last lines of stderr/stdout still appear in a start-up error).
	Stdout, Stderr io.Writer
	// StartTimeout bounds the wait for the first PONG. Default 10s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL when
	// its context has no earlier deadline. Default 5s.
	StopTimeout time.Duration
	// Cluster starts the server in cluster mode (`cluster-enabled yes`,
	// its node file in Dir, which must be set). It serves nothing until
	// it is given hash slots and has met its peers (see
	// redistest.StartCluster).
	Cluster bool
}

func (o Options) withDefaults() Options {
	if o.Binary == "" {
		o.Binary = "redis-server"
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 5 * time.Second
	}
	return o
}

// Redis is a running redis-server child process.
type Redis struct {
	addr        string
	cmd         *exec.Cmd
	done        chan struct{} // closed when the process has exited
	waitErr     error         // valid after done
	stopTimeout time.Duration
	stopOnce    sync.Once
	stopErr     error
}

// StartRedis starts redis-server and returns once it answers PING. The
// context bounds the start only; use Stop to end the server.
func StartRedis(ctx context.Context, opts Options) (*Redis, error) {
	opts = opts.withDefaults()
	bin, err := exec.LookPath(opts.Binary)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("%w (looked for %q)", ErrNoRedisServer, opts.Binary)
		}
		return nil, fmt.Errorf("embedded: redis-server: %w", err)
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("embedded: data dir: %w", err)
		}
	}
	// A free port found by binding :0 can be taken by someone else before
	// redis-server binds it; try a few times when we picked it.
	attempts := 1
	if opts.Addr == "" {
		attempts = 3
	}
	for i := 0; ; i++ {
		addr := opts.Addr
		if addr == "" {
			addr, err = freeAddr()
			if err != nil {
				return nil, err
			}
		}
		r, err := start(ctx, bin, addr, opts)
		if err == nil || i+1 >= attempts || ctx.Err() != nil {
			return r, err
		}
	}
}

func start(ctx context.Context, bin, addr string, opts Options) (*Redis, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded: bad address %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	args := []string{
		"--bind", host,
		"--port", port,
		"--daemonize", "no",
		"--loglevel", "warning",
		"--logfile", "",
		"--databases", "16",
	}
	if opts.Dir != "" {
		fsync := opts.AppendFsync
		if fsync == "" {
			fsync = "everysec"
		}
		args = append(args, "--dir", opts.Dir, "--appendonly", "yes", "--appendfsync", fsync)
	} else {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	if opts.Cluster {
		if opts.Dir == "" {
			return nil, errors.New("embedded: a cluster node needs a Dir for its node file")
		}
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "5000")
	}
	// Keep the last output for a start-up error message.
	tail := &tailBuffer{max: 4096}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = io.MultiWriter(opts.Stdout, tail)
	cmd.Stderr = io.MultiWriter(opts.Stderr, tail)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("embedded: start %s: %w", bin, err)
	}
	r := &Redis{
		addr:        net.JoinHostPort(host, port),
		cmd:         cmd,
		done:        make(chan struct{}),
		stopTimeout: opts.StopTimeout,
	}
	go func() {
		r.waitErr = cmd.Wait()
		close(r.done)
	}()

	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	for {
		if err := ping(ctx, r.addr); err == nil {
			// The port may be another server's: ours then failed to bind
			// it and exits, and that one answers. It must not pass for ours
			// (two tests would share a database; a cluster node would join
			// another cluster).
			pid, err := serverPID(ctx, r.addr)
			if err == nil && pid == cmd.Process.Pid {
				return r, nil
			}
			_ = r.Stop(context.Background())
			if err != nil {
				return nil, fmt.Errorf("embedded: redis-server on %s: read its process id: %w", r.addr, err)
			}
			return nil, fmt.Errorf("embedded: %s is another redis-server's (pid %d), not the one started (pid %d): %s",
				r.addr, pid, cmd.Process.Pid, strings.TrimSpace(tail.String()))
		}
		select {
		case <-r.done:
			return nil, fmt.Errorf("embedded: redis-server on %s exited before answering PING (%v): %s",
				r.addr, r.waitErr, strings.TrimSpace(tail.String()))
		case <-ctx.Done():
			_ = r.Stop(context.Background())
			return nil, fmt.Errorf("embedded: redis-server on %s did not answer PING: %w; output: %s",
				r.addr, ctx.Err(), strings.TrimSpace(tail.String()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return r.addr }

// URL is the server's address as a redis:// URL for database 0.
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// Pid is the server's process id.
func (r *Redis) Pid() int { return r.cmd.Process.Pid }

// Done is closed when the server process has exited, for whatever reason.
func (r *Redis) Done() <-chan struct{} { return r.done }

// Stop sends SIGTERM, waits for the server to exit and sends SIGKILL when
// it has not by the context's deadline or the stop timeout, whichever comes
// first. Calling Stop again returns the first result.
func (r *Redis) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() { r.stopErr = r.stop(ctx) })
	return r.stopErr
}

func (r *Redis) stop(ctx context.Context) error {
	select {
	case <-r.done:
		return nil // already gone (killed, crashed): nothing to stop
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(r.stopTimeout)
	defer timer.Stop()
	select {
	case <-r.done:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	return fmt.Errorf("embedded: redis-server on %s did not stop after SIGTERM; killed", r.addr)
}

// Kill ends the server with SIGKILL at once, as a crash would, and waits
// for it to exit. Tests use it; Stop is the polite way.
func (r *Redis) Kill() {
	r.stopOnce.Do(func() {})
	_ = r.cmd.Process.Kill()
	<-r.done
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("embedded: find a free port: %w", err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// serverPID asks the redis-server on addr for its process id (INFO server).
func serverPID(ctx context.Context, addr string) (int, error) {
	pid := 0
	err := inline(ctx, addr, "INFO server", func(r *bufio.Reader) error {
		head, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
		if !strings.HasPrefix(head, "$") || err != nil {
			return fmt.Errorf("unexpected INFO reply %q", strings.TrimSpace(head))
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		for line := range strings.SplitSeq(string(body), "\r\n") {
			if v, ok := strings.CutPrefix(line, "process_id:"); ok {
				pid, err = strconv.Atoi(v)
				return err
			}
		}
		return errors.New("INFO server has no process_id")
	})
	return pid, err
}

// ping sends an inline PING and expects +PONG. A server still loading its
// AOF answers -LOADING, which counts as not ready.
func ping(ctx context.Context, addr string) error {
	return inline(ctx, addr, "PING", func(r *bufio.Reader) error {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("embedded: unexpected PING reply %q", strings.TrimSpace(line))
		}
		return nil
	})
}

// inline sends one inline command on a new connection and lets read read
// the reply.
func inline(ctx context.Context, addr, cmd string, read func(*bufio.Reader) error) error {
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return err
	}
	return read(bufio.NewReader(conn))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
