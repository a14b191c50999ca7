//go:build wasip1

package guest

import (
	"os"
	_ "unsafe" // go:linkname
)

// mainMain is the program's main function, which Go does not run in a
// c-shared build: atf_handle runs it once, to learn the handler.
//
//go:linkname mainMain main.main
func mainMain()

// atfHandle is the reactor's handler (ABI.md): the payload, payloadLen
// bytes, is on stdin. A command exports it too; atf never calls it there.
//
//go:wasmexport atf_handle
func atfHandle(payloadLen int32) int32 {
	return int32(handleTask(mainMain, os.Stdin, os.Stdout, os.Stderr))
}
