package guest

import (
	"fmt"
	"io"
)

// The reactor model (sdk/guest/ABI.md, runtime/sandbox/doc.go): the same
// main builds as a command or, with -buildmode=c-shared, as a reactor
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// Go then exports _initialize (runtime and package initialisation; main is
// not run) and this package exports atf_handle (reactor_wasip1.go). The
// first atf_handle call runs main, in which Handle only registers the
// handler; every call then runs the handler on the task's payload (stdin)
// and returns the status a command would exit with.

var (
	// inReactor is set while main runs inside atf_handle.
	inReactor bool
	// reactorHandler is the Handler main registered.
	reactorHandler Handler
)

// handleTask is atf_handle: main is the program's main.main.
func handleTask(main func(), stdin io.Reader, stdout, stderr io.Writer) int {
	if reactorHandler == nil {
		inReactor = true
		main()
		if reactorHandler == nil {
			fmt.Fprintln(stderr, "atf: main returned without calling guest.Handle")
			return exitFatal
		}
	}
	return run(reactorHandler, stdin, stdout, stderr)
}
