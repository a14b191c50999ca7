// Package golden holds the example lambdas' golden-file test helpers.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// Read returns a test file's bytes.
func Read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Check compares got with the golden file, or rewrites the file when the
// test runs with -update.
func Check(t testing.TB, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want := Read(t, golden); !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test -update to accept):\n got: %s\nwant: %s",
			filepath.ToSlash(golden), got, want)
	}
}

// Updating reports whether the test runs with -update (a test whose
// golden file another test writes then skips its own check).
func Updating() bool { return *update }
