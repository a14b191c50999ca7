package main

import (
	"errors"
	"slices"
	"strings"
	"unicode/utf8"
)

// reverse reverses each line of a UTF-8 text, character by character
// (rune by rune: a combining accent moves to the other side of its letter),
// keeping the lines in order and the line endings where they were. Text
// that is not valid UTF-8 is an error: retrying would not help.
func reverse(in []byte) ([]byte, error) {
	if !utf8.Valid(in) {
		return nil, errors.New("payload is not valid UTF-8 text")
	}
	lines := strings.SplitAfter(string(in), "\n")
	var out strings.Builder
	out.Grow(len(in))
	for _, line := range lines {
		body, nl := strings.CutSuffix(line, "\n")
		body, cr := strings.CutSuffix(body, "\r")
		r := []rune(body)
		slices.Reverse(r)
		out.WriteString(string(r))
		if cr {
			out.WriteByte('\r')
		}
		if nl {
			out.WriteByte('\n')
		}
	}
	return []byte(out.String()), nil
}
