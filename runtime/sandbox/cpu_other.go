//go:build !linux

package sandbox

import "time"

// threadCPU is not measured outside Linux: tasks report no CPU time.
func threadCPU() (time.Duration, bool) { return 0, false }
