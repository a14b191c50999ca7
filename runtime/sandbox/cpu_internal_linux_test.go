package sandbox

import (
	"runtime"
	"testing"
	"time"
)

// TestThreadCPU: readings of the thread's CPU clock grow by about the CPU
// time a locked goroutine burns between them, and never by more than the
// wall time.
func TestThreadCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, ok0 := threadCPU()
	start := time.Now()
	for time.Since(start) < 50*time.Millisecond { // spin
	}
	c1, ok1 := threadCPU()
	wall := time.Since(start)
	if !ok0 || !ok1 {
		t.Fatal("thread CPU clock not read")
	}
	if d := c1 - c0; d < 10*time.Millisecond || d > wall+time.Millisecond {
		t.Errorf("a %s spin used %s of thread CPU time", wall, d)
	}
}
