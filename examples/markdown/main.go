// Command markdown is an atf lambda that renders a Markdown document, such
// as a README, to an HTML fragment.
//
// Build it with:
//
//	GOOS=wasip1 GOARCH=wasm go build -o examples/markdown/markdown.wasm ./examples/markdown
//
// It reads the document from stdin and writes HTML to stdout. Raw HTML in the
// document is omitted, so the output is safe to embed in a page.
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
	src, err := io.ReadAll(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "markdown: reading document:", err)
		return 75 // EX_TEMPFAIL: the platform may retry.
	}
	out, err := render(src)
	if err != nil {
		fmt.Fprintln(stderr, "markdown: rendering:", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintln(stderr, "markdown: writing output:", err)
		return 75
	}
	return 0
}
