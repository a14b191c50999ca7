//go:build wasip1

// Command recurse recurses without bound. The goroutine stack limit is set
// to 8 MiB so the Go runtime reports "stack overflow" before it exhausts a
// moderate memory limit.
package main

import (
	"fmt"
	"runtime/debug"
)

//go:noinline
func down(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	return down(n+1) + int(pad[n%64])
}

func main() {
	debug.SetMaxStack(8 << 20)
	fmt.Println(down(0))
}
