package guest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	cases := []struct {
		name     string
		h        Handler
		code     int
		out, err string
	}{
		{"success", func(ctx context.Context, p []byte) ([]byte, error) { return append([]byte("got "), p...), nil }, 0, "got in", ""},
		{"fatal", func(ctx context.Context, p []byte) ([]byte, error) { return nil, errors.New("bad\ninput") }, 1, "", "bad input\n"},
		{"retry", func(ctx context.Context, p []byte) ([]byte, error) { return nil, Retry(errors.New("busy")) }, 75, "", "busy\n"},
		{"panic", func(ctx context.Context, p []byte) ([]byte, error) { panic("boom") }, 1, "", "panic: boom\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(c.h, strings.NewReader("in"), &out, &errOut)
			if code != c.code || out.String() != c.out || errOut.String() != c.err {
				t.Errorf("code %d out %q err %q; want %d %q %q", code, out.String(), errOut.String(), c.code, c.out, c.err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	err := check("kv_get", codeNotFound)
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrDenied) || err.Error() != "atf_v1.kv_get: not found" {
		t.Errorf("err %v", err)
	}
	if check("log", 0) != nil || Retry(nil) != nil || !IsRetry(Retry(err)) || IsRetry(err) {
		t.Error("check/Retry")
	}
	// Natively the I/O is unavailable and progress never cancels.
	if _, err := KVGet("k"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("KVGet natively: %v", err)
	}
	if Progress(50) {
		t.Error("Progress cancelled natively")
	}
}

func TestHandleTaskReactor(t *testing.T) {
	defer func() { inReactor, reactorHandler = false, nil }()
	mains := 0
	main := func() {
		mains++
		Handle(func(ctx context.Context, p []byte) ([]byte, error) {
			if string(p) == "fail" {
				return nil, errors.New("failed")
			}
			return append([]byte("got "), p...), nil
		})
	}
	for _, c := range []struct {
		in, out, err string
		code         int
	}{{"a", "got a", "", 0}, {"fail", "", "failed\n", 1}, {"b", "got b", "", 0}} {
		var out, errOut bytes.Buffer
		code := handleTask(main, strings.NewReader(c.in), &out, &errOut)
		if code != c.code || out.String() != c.out || errOut.String() != c.err {
			t.Errorf("%s: code %d out %q err %q; want %d %q %q", c.in, code, out.String(), errOut.String(), c.code, c.out, c.err)
		}
	}
	if mains != 1 {
		t.Errorf("main ran %d times, want 1", mains)
	}
}

func TestHandleTaskWithoutHandle(t *testing.T) {
	defer func() { inReactor, reactorHandler = false, nil }()
	var out, errOut bytes.Buffer
	if code := handleTask(func() {}, strings.NewReader(""), &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "without calling guest.Handle") {
		t.Errorf("code %d, stderr %q", code, errOut.String())
	}
}

func TestProgressCancelsOnlyTheRunningTask(t *testing.T) {
	var seen context.Context
	h := func(ctx context.Context, p []byte) ([]byte, error) {
		seen = ctx
		return nil, nil
	}
	run(h, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	cancelRunning() // between tasks: nothing to cancel
	if seen.Err() == nil {
		t.Error("a finished task's context is still live")
	}
	run(h, strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	if context.Cause(seen) == ErrCancelled {
		t.Error("the next task started cancelled")
	}
}

// Natively (a command, or the reactor path's stub) the task's values come
// from the process environment.
func TestTaskEnv(t *testing.T) {
	t.Setenv("ATF_TASK_ID", "task-1")
	t.Setenv("ATF_ATTEMPT", "2")
	t.Setenv("TRACEPARENT", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	t.Setenv("ATF_LAMBDA", "l")
	defer func() { inReactor = false }()
	for _, reactor := range []bool{false, true} {
		inReactor = reactor
		if TaskID() != "task-1" || Attempt() != 2 || TraceParent() != os.Getenv("TRACEPARENT") || Lambda() != "l" {
			t.Errorf("reactor %v: %q %d %q %q", reactor, TaskID(), Attempt(), TraceParent(), Lambda())
		}
	}
	t.Setenv("ATF_ATTEMPT", "x")
	if Attempt() != 0 {
		t.Errorf("Attempt with ATF_ATTEMPT=x: %d, want 0", Attempt())
	}
}
