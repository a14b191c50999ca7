//go:build wasip1

// Command reactorecho is a Go reactor (built with -buildmode=c-shared) on
// the guest SDK: it answers the payload followed by " #N", N being the
// tasks this instance has served, so tests see an instance reused. The
// payloads "fail", "retry", "panic" and "exit" end the task those ways,
// "loop" never ends, "sleep" sleeps 20 ms (in a goroutine it waits for)
// before answering.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/atfhq/atf/sdk/guest"
)

var served int

func main() {
	guest.Handle(func(ctx context.Context, payload []byte) ([]byte, error) {
		served++
		switch string(payload) {
		case "fail":
			return nil, errors.New("asked to fail")
		case "retry":
			return nil, guest.Retry(errors.New("asked to retry"))
		case "panic":
			panic("asked to panic")
		case "exit":
			os.Exit(3)
		case "loop":
			for {
				served++
			}
		case "sleep":
			done := make(chan struct{})
			go func() {
				time.Sleep(20 * time.Millisecond)
				close(done)
			}()
			<-done
		}
		return fmt.Appendf(payload, " #%d", served), nil
	})
}
