//go:build !wasip1

package guest

import (
	"fmt"
	"os"
)

// Stubs for running a handler natively (unit tests): logs go to stderr,
// progress never cancels, spans are no-ops and the I/O is unavailable.

var levelNames = [...]string{"DEBUG", "INFO", "WARN", "ERROR"}

func hostLog(level int32, msg string) int32 {
	if level < 0 || int(level) >= len(levelNames) {
		return codeInvalid
	}
	fmt.Fprintf(os.Stderr, "%s %s\n", levelNames[level], msg)
	return codeOK
}

func hostProgress(percent int32) int32 {
	if percent < 0 || percent > 100 {
		return codeInvalid
	}
	return 0
}

func hostSpanStart(parent int32, name string) int32            { return 1 }
func hostSpanSetAttribute(span int32, key, value string) int32 { return codeOK }
func hostSpanEnd(span, isError int32, msg string) int32        { return codeOK }

func hostHTTP(method, url, headers string, body []byte, timeoutMS int32) (uint32, uint32, uint32, int32) {
	return 0, 0, 0, codeUnavailable
}

func readResult(n uint32) []byte { return nil }

// hostTaskEnv reads the process environment, as a command does.
func hostTaskEnv(name string) (string, int32) {
	if v, ok := os.LookupEnv(name); ok {
		return v, codeOK
	}
	return "", codeNotFound
}

func hostKVGet(key string) (uint32, int32)                       { return 0, codeUnavailable }
func hostKVSet(key string, value []byte, ttlMS int64) int32      { return codeUnavailable }
func hostKVDelete(key string) int32                              { return codeUnavailable }
func hostSchedule(string, []byte, int64, string) (uint32, int32) { return 0, codeUnavailable }
