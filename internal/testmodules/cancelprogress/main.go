// Command cancelprogress reports progress every 20ms until Progress says
// the task was cancelled, then writes "stopped cleanly" and exits 0.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/atfhq/atf/sdk/guest"
)

func main() {
	guest.Handle(func(ctx context.Context, payload []byte) ([]byte, error) {
		for i := 0; ; i++ {
			if guest.Progress(i % 100) {
				fmt.Fprintln(os.Stderr, "cancel seen at", i, "context:", context.Cause(ctx))
				return []byte("stopped cleanly"), nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
