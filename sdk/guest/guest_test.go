package guest

import (
	"bytes"
	"context"
	"errors"
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
