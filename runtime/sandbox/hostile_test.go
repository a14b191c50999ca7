package sandbox_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// Modules that never end by themselves: each must be stopped by a 1s
// timeout within 1.5s, then the Engine must still run a normal task.
// Not parallel: it measures time, and parallel tests spinning on every core
// delay the timer that stops the module.
func TestRunHostileTimeouts(t *testing.T) {
	b := setup(t, sandbox.Config{})
	for _, tc := range []struct {
		name    string
		wasm    func(t *testing.T) []byte
		payload string
	}{
		{"go busy loop", func(t *testing.T) []byte { return testmodules.Build(t, "loop") }, ""},
		{"wat empty loop", func(t *testing.T) []byte { return testmodules.WAT(t, "spin") }, ""},
		{"loop in the start section", func(t *testing.T) []byte { return testmodules.WAT(t, "startloop") }, ""},
		{"calls without a loop", func(t *testing.T) []byte { return testmodules.WAT(t, "callspin") }, ""},
		{"exponential calls, no loop, no recursion", func(t *testing.T) []byte { return testmodules.WAT(t, "dagspin") }, ""},
		{"sleep in poll_oneoff past the deadline", func(t *testing.T) []byte { return testmodules.Build(t, "sleep") }, "60000"},
		{"c cpu loop", func(t *testing.T) []byte { return testmodules.C(t, "xorshift") }, "100000000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := b.newJob(tc.wasm(t), tc.payload)
			b.requireCompiled(t, job)
			job.Timeout = time.Second
			start := time.Now()
			res := b.run(t, job)
			elapsed := time.Since(start)
			wantFailure(t, res, atfv1.Outcome_OUTCOME_RETRY, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
				"timeout: the module ran longer than 1s (timeout=1s)", "timeout=1s")
			if elapsed < time.Second || elapsed > 1500*time.Millisecond {
				t.Errorf("run took %s, want 1s to 1.5s", elapsed)
			}
			b.requireEcho(t)
		})
	}
}

// A cancel (claim lost) stops every kind of endless module within a second.
func TestRunHostileCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	for _, wasm := range [][]byte{testmodules.WAT(t, "callspin"), testmodules.Build(t, "sleep")} {
		job := b.newJob(wasm, "60000")
		b.requireCompiled(t, job)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		res := b.engine.Run(ctx, job)
		if res.Outcome != atfv1.Outcome_OUTCOME_CANCELLED {
			t.Errorf("outcome %s, error %v", res.Outcome, res.Error)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("cancel took %s", elapsed)
		}
	}
	b.requireEcho(t)
}

// Per-job output and log limits (the lambda's max_output_bytes and
// max_log_bytes) override the Engine's and name themselves.
func TestRunJobStreamLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	job := b.newJob(testmodules.Build(t, "stderrflood"), "")
	job.MaxLogBytes = 1 << 20
	res := b.run(t, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
		"log limit hit: the module wrote more than 1048576 bytes to stderr (max_log_bytes=1048576)", "max_log_bytes=1048576")
	b.requireEcho(t)

	job = b.newJob(testmodules.Build(t, "flood"), "")
	job.MaxOutputBytes = 1000
	res = b.run(t, job)
	wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_OUTPUT_LIMIT,
		"output limit hit: the module wrote more than 1000 bytes to stdout (max_output_bytes=1000)", "max_output_bytes=1000")
	if len(res.Output) != 1000 {
		t.Errorf("output %d bytes, want 1000", len(res.Output))
	}
	b.requireEcho(t)
}

// Odd proc_exit codes, including the two wazero reserves for a module it
// closed itself (0xffffffff, 0xefffffff): a guest can pass them too.
func TestRunOddExitCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	wasm := testmodules.Build(t, "exit")
	for _, tc := range []struct {
		payload string
		code    int32
	}{{"255", 255}, {"-1", -1}, {"-268435457", -268435457}, {"2147483647", 2147483647}} {
		res := b.run(t, b.newJob(wasm, tc.payload))
		wantFailure(t, res, atfv1.Outcome_OUTCOME_FATAL, atfv1.ErrorKind_ERROR_KIND_EXIT,
			"exit code "+strconv.FormatUint(uint64(uint32(tc.code)), 10)+": bye", "")
		wantExitCode(t, res, tc.code)
	}
	b.requireEcho(t)
}

// No socket reaches the network: the WASI sock_* calls on every fd a
// module might guess fail inside the guest, and Go's net package on wasip1
// cannot dial or listen. Nothing connects to a listener the module is
// told about.
func TestRunHostileSockets(t *testing.T) {
	t.Parallel()
	b := setup(t, sandbox.Config{})
	res := b.run(t, b.newJob(testmodules.WAT(t, "sockets"), ""))
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS || string(res.Output) != "no sockets\n" {
		t.Errorf("sockets.wat: outcome %s, output %q, error %v", res.Outcome, res.Output, res.Error)
	}
	b.requireEcho(t)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var arrived atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			arrived.Add(1)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := u.ReadFrom(buf); err != nil {
				return
			}
			arrived.Add(1)
		}
	}()
	res = b.run(t, b.newJob(testmodules.Build(t, "netdial"), l.Addr().String()+" "+u.LocalAddr().String()))
	t.Logf("netdial output:\n%s", res.Output)
	if res.Outcome != atfv1.Outcome_OUTCOME_SUCCESS {
		t.Errorf("netdial: outcome %s, error %v", res.Outcome, res.Error)
	}
	if !strings.Contains(string(res.Output), "dial tcp "+l.Addr().String()+": dial tcp") {
		t.Errorf("netdial's TCP dial did not fail")
	}
	time.Sleep(200 * time.Millisecond)
	if n := arrived.Load(); n != 0 {
		t.Errorf("%d connections or datagrams from the module arrived", n)
	}
	b.requireEcho(t)
}

// registerBlock registers atf_v1.block, which stores the calling module in
// last, then waits for the run context when respectCtx is set, and for
// release otherwise (a host function that ignores its context).
func registerBlock(respectCtx bool, last *atomic.Value, release <-chan struct{}) sandbox.HostModule {
	return func(ctx context.Context, r wazero.Runtime) error {
		_, err := r.NewHostModuleBuilder("atf_v1").
			NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, _ []uint64) {
				last.Store(m)
				if respectCtx {
					select {
					case <-ctx.Done():
					case <-release:
					}
					return
				}
				<-release
			}), nil, nil).
			Export("block").
			Instantiate(ctx)
		return err
	}
}

// A module blocked in an atf_v1 call past its deadline. A host function
// that returns when its context is done lets the module stop as usual; one
// that ignores it cannot be stopped, so Run gives up on the module
// (abandonAfter, 500 ms, after the deadline), reports the timeout or the
// cancel, and the instance is closed once the host function returns.
func TestRunHostileBlockingHostCall(t *testing.T) {
	t.Parallel()
	wasm := testmodules.WAT(t, "hostblock")
	for _, tc := range []struct {
		name       string
		respectCtx bool
		cancel     bool // cancel after 100ms instead of a 1s timeout
		want       atfv1.Outcome
		maxTime    time.Duration
	}{
		{"respects its context, timeout", true, false, atfv1.Outcome_OUTCOME_RETRY, 1500 * time.Millisecond},
		{"ignores its context, timeout", false, false, atfv1.Outcome_OUTCOME_RETRY, 2 * time.Second},
		{"ignores its context, cancel", false, true, atfv1.Outcome_OUTCOME_CANCELLED, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var last atomic.Value // api.Module
			release := make(chan struct{})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			b := setup(t, sandbox.Config{HostModules: []sandbox.HostModule{registerBlock(tc.respectCtx, &last, release)}})
			job := b.newJob(wasm, "")
			job.Timeout = time.Second
			b.requireCompiled(t, job)
			ctx := context.Background()
			if tc.cancel {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			start := time.Now()
			res := b.engine.Run(ctx, job)
			elapsed := time.Since(start)
			t.Logf("outcome=%s after %s, error %v", res.Outcome, elapsed, res.Error)
			switch {
			case tc.want == atfv1.Outcome_OUTCOME_CANCELLED:
				msg := "cancelled: context canceled (the module was blocked in a host function and did not stop; it was abandoned)"
				wantFailure(t, res, tc.want, atfv1.ErrorKind_ERROR_KIND_UNSPECIFIED, msg, "")
			case tc.respectCtx:
				wantFailure(t, res, tc.want, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
					"timeout: the module ran longer than 1s (timeout=1s)", "timeout=1s")
			default:
				wantFailure(t, res, tc.want, atfv1.ErrorKind_ERROR_KIND_TIMEOUT,
					"timeout: the module ran longer than 1s (timeout=1s) (the module was blocked in a host function and did not stop; it was abandoned)", "timeout=1s")
			}
			if elapsed > tc.maxTime {
				t.Errorf("Run took %s, want at most %s", elapsed, tc.maxTime)
			}
			mod := last.Load().(api.Module)
			if !tc.respectCtx {
				if mod.IsClosed() {
					t.Error("the instance was closed while its host function still ran")
				}
				close(release) // the host function returns; the module must be closed
				deadline := time.Now().Add(time.Second)
				for !mod.IsClosed() && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}
			if !mod.IsClosed() {
				t.Error("the instance is not closed")
			}
			b.requireEcho(t)
		})
	}
}
