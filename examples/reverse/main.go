//atf:reactor

// Command reverse is an atf lambda built as a reactor: it reverses each
// line of a text payload.
//
// Build it with:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o examples/reverse/reverse.wasm ./examples/reverse
//
// -buildmode=c-shared makes a reactor: atf instantiates the module once and
// calls the guest SDK's atf_handle for each task, instead of starting a Go
// program per task (a few microseconds of overhead per task instead of
// ~7 ms). Without the flag the same code builds as a command, which atf
// runs too. The //atf:reactor line above tells the Makefile which flag to
// use.
package main

import (
	"context"

	"github.com/atfhq/atf/sdk/guest"
)

// tasks counts the tasks this instance has served: it outlives a task in a
// reactor (which must tolerate that, never rely on it).
var tasks int

func main() {
	guest.Handle(handle)
}

func handle(ctx context.Context, payload []byte) ([]byte, error) {
	tasks++
	// TaskID and Attempt are the running task's, also in a reactor (the
	// SDK asks the host: the instance's WASI environment is fixed).
	guest.Debugf("task %s (attempt %d), %d of this instance: %d bytes", guest.TaskID(), guest.Attempt(), tasks, len(payload))
	return reverse(payload)
}
