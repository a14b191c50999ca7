//go:build wasip1

// Command stderrflood writes 256 MiB of log lines to stderr, ends with the
// line "last line", prints "done" to stdout and exits 0.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	line := strings.Repeat("y", 1023) + "\n"
	buf := []byte(strings.Repeat(line, 64))
	for written := 0; written < 256<<20; written += len(buf) {
		os.Stderr.Write(buf)
	}
	os.Stderr.WriteString("last line\n")
	fmt.Print("done")
}
