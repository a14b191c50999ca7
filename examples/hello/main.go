// Command hello is an atf lambda that greets someone by name.
//
// Build it with:
//
//	GOOS=wasip1 GOARCH=wasm go build -o examples/hello/hello.wasm ./examples/hello
//
// It reads the payload from stdin, writes the greeting to stdout and exits 0;
// a malformed payload is reported on stderr with exit 1 (a fatal failure).
package main

import (
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
		fmt.Fprintln(stderr, "hello: reading payload:", err)
		return 75 // EX_TEMPFAIL: the platform may retry.
	}
	out, err := greet(in)
	if err != nil {
		fmt.Fprintln(stderr, "hello:", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintln(stderr, "hello: writing output:", err)
		return 75
	}
	return 0
}
