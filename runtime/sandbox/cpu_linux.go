package sandbox

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time the calling OS thread has used; ok is false
// when the clock cannot be read. With the goroutine locked to its thread
// (runtime.LockOSThread), the difference of two readings is the CPU time
// of what the goroutine ran in between.
//
// It is a raw system call: clock_gettime returns at once, so telling the
// scheduler about it (unix.ClockGettime's Syscall enters and leaves a
// blocking system call) only cost time — ~0.2 µs of a ~0.9 µs reading on
// the 2-core VM, twice per task (the vDSO does not serve a thread's CPU
// clock).
func threadCPU() (d time.Duration, ok bool) {
	var ts unix.Timespec
	_, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_THREAD_CPUTIME_ID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
