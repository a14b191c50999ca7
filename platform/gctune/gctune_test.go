package gctune_test

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/atfhq/atf/platform/gctune"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		base           int
		headroom, live uint64
		want           int
	}{
		{100, 64 << 20, 0, 100},
		{100, 64 << 20, 64 << 20, 100},  // live = headroom: the default goal is live + headroom
		{100, 64 << 20, 512 << 20, 100}, // a large heap keeps the base
		{100, 64 << 20, 4 << 20, 1536},  // 1600 rounded down to 4 significant bits
		{100, 64 << 20, 32 << 20, 192},  // 200 rounded down
		{200, 64 << 20, 48 << 20, 200},  // never below base
		{100, 64 << 20, 1, 1 << 20},     // capped
	} {
		if got := gctune.Percent(tc.base, tc.headroom, tc.live); got != tc.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", tc.base, tc.headroom, tc.live, got, tc.want)
		}
	}
	// The goal never falls short of live + headroom by more than 1/8.
	for live := uint64(1 << 16); live < 1<<30; live = live*5/4 + 1 {
		p := gctune.Percent(100, 64<<20, live)
		goal := live + live*uint64(p)/100
		if want := live + 64<<20; goal < want-want/8 {
			t.Fatalf("live %d: percent %d gives goal %d, want about %d", live, p, goal, want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestStart: with a small live heap the percentage rises; with a live heap
// larger than the headroom it falls back to the base; stop restores it.
func TestStart(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	stop := gctune.Start(t.Context(), 100, 64<<20, 5*time.Millisecond)
	waitFor := func(what string, ok func(uint64) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC()
			p := gogc()
			if ok(p) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GOGC is %d; want %s", p, what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("> 200 with a small live heap", func(p uint64) bool { return p > 200 })
	big := make([]byte, 256<<20) // live: kept until after the wait
	waitFor("100 with a 256 MiB live heap", func(p uint64) bool { return p == 100 })
	runtime.KeepAlive(big)
	stop()
	if p := gogc(); p != 100 {
		t.Fatalf("after stop GOGC is %d, want the base 100", p)
	}
}
