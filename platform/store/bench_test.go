package store_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atfhq/atf/platform/redistest"
	"github.com/atfhq/atf/platform/store"
)

// BenchmarkScheduleOne: one Schedule at a time (no pipelining), to read
// redis-server's cost of the schedule script.
func BenchmarkScheduleOne(b *testing.B) {
	rdb := redistest.Start(b)
	s := store.New(rdb, store.Options{})
	ctx := b.Context()
	if _, err := s.DeployLambda(ctx, store.Lambda{Namespace: "default", Name: "noop", SHA256: strings.Repeat("a", 64), MemoryMB: 64, MaxAttempts: 3, Timeout: time.Minute}); err != nil {
		b.Fatal(err)
	}
	rdb.ConfigResetStat(ctx)
	for b.Loop() {
		if _, _, err := s.Schedule(ctx, store.NewTask{Namespace: "default", Lambda: "noop", Payload: []byte(`{"n":1}`), TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}); err != nil {
			b.Fatal(err)
		}
	}
	info, _ := rdb.Info(ctx, "commandstats").Result()
	for _, l := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(l, "cmdstat_") {
			f := strings.Split(l, ",")
			calls, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(f[0], "=")[1], ""))
			b.Logf("%s (calls/op %.2f)", l, float64(calls)/float64(b.N))
		}
	}
}
