package main

import (
	"io"
	"strings"
	"testing"
)

// TestBadTimeoutFlags: timeouts that break a guarantee are refused before
// anything starts, from flags and from their ATF_* variables alike, with
// the rule broken.
func TestBadTimeoutFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"server", "--dispatch-lead", "5s"}, nil, "--dispatch-lead 5s must be between 0 and 1s"},
		{[]string{"dev"}, map[string]string{"ATF_DISPATCH_LEAD": "-1ms"}, "--dispatch-lead -1ms must be between 0 and 1s"},
		{[]string{"server", "--retention", "0s"}, nil, "--retention 0s must be positive"},
		{[]string{"dev", "--heartbeat-interval", "5s", "--heartbeat-timeout", "10s"}, nil, "must exceed three --heartbeat-interval"},
	} {
		getenv := func(k string) string {
			if k == "ATF_REDIS" {
				return "redis://127.0.0.1:1" // never dialled: the flags are refused first
			}
			return tc.env[k]
		}
		err := run(t.Context(), tc.args, getenv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("atf %v (env %v): %v, want an error with %q", tc.args, tc.env, err, tc.want)
		}
	}
}
