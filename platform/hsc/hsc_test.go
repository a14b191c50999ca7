package hsc

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	cases := []struct {
		base, max time.Duration
		attempt   int
		jitter    float64
		want      time.Duration
	}{
		{time.Second, time.Minute, 1, 0, time.Second},
		{time.Second, time.Minute, 2, 0, 2 * time.Second},
		{time.Second, time.Minute, 4, 0, 8 * time.Second},
		{time.Second, time.Minute, 30, 0, time.Minute},
		{time.Second, 5 * time.Second, 4, 0, 5 * time.Second},
		{time.Second, time.Minute, 1, 0.5, 900 * time.Millisecond},
		{time.Second, time.Minute, 1, 0.999999, 800*time.Millisecond + 200},
		{0, time.Minute, 3, 0, 0},
	}
	for _, c := range cases {
		if got := Backoff(c.base, c.max, c.attempt, c.jitter); got != c.want {
			t.Errorf("Backoff(%s, %s, %d, %v) = %s, want %s", c.base, c.max, c.attempt, c.jitter, got, c.want)
		}
	}
}
