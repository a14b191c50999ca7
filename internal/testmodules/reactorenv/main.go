//go:build wasip1

// Command reactorenv is a Go reactor (built with -buildmode=c-shared) on the
// guest SDK that answers what the SDK says of the running task:
//
//	<TaskID>;<Attempt>;<TraceParent>;<Lambda>;#<tasks this instance served>
//
// so tests see each task's own values on a reused instance. It imports
// atf_v1.task_env: run it with the hostmod module registered.
package main

import (
	"context"
	"fmt"

	"github.com/atfhq/atf/sdk/guest"
)

var served int

func main() {
	guest.Handle(func(ctx context.Context, payload []byte) ([]byte, error) {
		served++
		return fmt.Appendf(nil, "%s;%d;%s;%s;#%d", guest.TaskID(), guest.Attempt(), guest.TraceParent(), guest.Lambda(), served), nil
	})
}
