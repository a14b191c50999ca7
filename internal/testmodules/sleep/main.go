//go:build wasip1

// Command sleep sleeps for the milliseconds given as decimal in the
// payload, then prints "slept attempt=<ATF_ATTEMPT>".
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	b, _ := io.ReadAll(os.Stdin)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	time.Sleep(time.Duration(n) * time.Millisecond)
	fmt.Printf("slept attempt=%s", os.Getenv("ATF_ATTEMPT"))
}
