//go:build linux

package embedded

import "syscall"

// sysProcAttr makes the kernel kill redis-server when the thread that
// started it dies, so a crashed or killed parent leaves no server behind.
// (Pdeathsig follows the creating OS thread, not the process; the Go
// runtime rarely ends threads, and Stop remains the normal way out.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
