//go:build wasip1

// Command flaky exits 75 (retry) while ATF_ATTEMPT is below the number in
// the payload, then prints "ok attempt=<n>".
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

func main() {
	b, _ := io.ReadAll(os.Stdin)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	attempt, _ := strconv.Atoi(os.Getenv("ATF_ATTEMPT"))
	if attempt < n {
		fmt.Fprintf(os.Stderr, "attempt %d < %d, try again\n", attempt, n)
		os.Exit(75)
	}
	fmt.Printf("ok attempt=%d", attempt)
}
