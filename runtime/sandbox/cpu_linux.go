package sandbox

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time the calling OS thread has used; ok is false
// when the clock cannot be read. With the goroutine locked to its thread
// (runtime.LockOSThread), the difference of two readings is the CPU time
// of what the goroutine ran in between.
func threadCPU() (d time.Duration, ok bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
