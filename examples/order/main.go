// Command order is an atf lambda that validates an order and totals it with
// exact decimal arithmetic on integer cents.
//
// Build it with:
//
//	GOOS=wasip1 GOARCH=wasm go build -o examples/order/order.wasm ./examples/order
//
// It reads the order from stdin and writes the priced order to stdout. An
// order that fails validation is reported on stderr as one JSON line,
// {"error": "..."}, with exit code 1: a fatal failure, since the same
// payload would fail again.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the exit, so a test can call it.
func run(stdin io.Reader, stdout, stderr io.Writer) int {
	in, err := io.ReadAll(stdin)
	if err != nil {
		logError(stderr, fmt.Errorf("reading payload: %w", err))
		return 75 // EX_TEMPFAIL: the platform may retry.
	}
	out, err := totalOrder(in)
	if err != nil {
		logError(stderr, err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		logError(stderr, fmt.Errorf("writing output: %w", err))
		return 75
	}
	return 0
}

// logError writes err as one JSON line, {"error":"..."}.
func logError(w io.Writer, err error) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{err.Error()})
	fmt.Fprintf(w, "%s\n", b)
}
