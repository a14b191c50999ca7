//go:build wasip1

// Command flood writes 256 MiB to stdout, ignoring write errors.
package main

import "os"

func main() {
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = 'x'
	}
	for written := 0; written < 256<<20; written += len(buf) {
		os.Stdout.Write(buf)
	}
}
