//go:build !linux

package embedded

import "syscall"

// sysProcAttr: outside Linux there is no parent-death signal; the server
// outlives a parent that dies without calling Stop.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
