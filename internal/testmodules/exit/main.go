//go:build wasip1

// Command exit writes "bye" to stderr and exits with the code given in
// decimal as the payload.
package main

import (
	"io"
	"os"
	"strconv"
	"strings"
)

func main() {
	b, _ := io.ReadAll(os.Stdin)
	code, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		os.Stderr.WriteString("payload is not a number\n")
		os.Exit(3)
	}
	os.Stderr.WriteString("bye\n")
	os.Exit(code)
}
