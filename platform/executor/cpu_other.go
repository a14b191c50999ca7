//go:build !linux

package executor

import "time"

// threadCPU is not measured outside Linux: tasks report no CPU time.
func threadCPU() (time.Duration, bool) { return 0, false }
