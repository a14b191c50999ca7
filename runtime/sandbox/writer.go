package sandbox

import (
	"bytes"
	"errors"
	"strings"
)

// The guest's stdout and stderr. Neither buffers a whole stream: stdout
// keeps at most MaxOutputBytes, stderr a fixed-size tail.

// stopper stops the module when a writer's limit is hit (the run context).
type stopper interface{ Stop(cause error) }

// outputWriter keeps stdout up to limit bytes. The first write that would go
// past the limit keeps what fits, stops the module once (stop, with
// errOutputLimit) and fails; later writes fail without keeping anything.
type outputWriter struct {
	limit    int
	buf      bytes.Buffer
	exceeded bool
	stop     stopper // nil: none
}

var errStdoutFull = errors.New("stdout limit reached")

func (w *outputWriter) Write(p []byte) (int, error) {
	if w.exceeded {
		return 0, errStdoutFull
	}
	room := w.limit - w.buf.Len()
	if len(p) <= room {
		return w.buf.Write(p)
	}
	w.buf.Write(p[:room])
	w.exceeded = true
	if w.stop != nil {
		w.stop.Stop(errOutputLimit)
	}
	return room, errStdoutFull
}

// Bytes returns what was kept, nil when nothing was written.
func (w *outputWriter) Bytes() []byte {
	if w.buf.Len() == 0 {
		return nil
	}
	return w.buf.Bytes()
}

// maxLineBytes bounds a remembered stderr line.
const maxLineBytes = 256

// Go's runtime writes one of these as the first line of a crash report.
var crashPrefixes = []string{"panic: ", "fatal error: "}

// tailWriter keeps the last size bytes written (a ring buffer) and the first
// line that starts like a Go crash report ("panic: ", "fatal error: "), so a
// crash keeps its reason even when the goroutine dump that follows pushes it
// out of the tail.
type tailWriter struct {
	size  int    // of ring
	ring  []byte // allocated at the first write: most tasks write no stderr
	pos   int    // next write position in ring
	full  bool
	total int64

	// limit > 0 caps the bytes written (max_log_bytes): the write that goes
	// past it is still kept in the tail, then stop stops the module (with
	// errLogLimit) and later writes fail.
	limit    int64
	exceeded bool
	stop     stopper // nil: none

	line  []byte // start of the current line, up to maxLineBytes
	crash string
}

var errStderrFull = errors.New("stderr limit reached")

func (w *tailWriter) Write(p []byte) (int, error) {
	if w.exceeded {
		return 0, errStderrFull
	}
	w.total += int64(len(p))
	if w.limit > 0 && w.total > w.limit {
		w.exceeded = true
		if w.stop != nil {
			w.stop.Stop(errLogLimit)
		}
	}
	if w.ring == nil {
		w.ring = make([]byte, w.size)
	}
	w.scanLines(p)
	n := len(w.ring)
	if len(p) >= n {
		copy(w.ring, p[len(p)-n:])
		w.pos, w.full = 0, true
		return len(p), nil
	}
	c := copy(w.ring[w.pos:], p)
	if c < len(p) {
		copy(w.ring, p[c:])
		w.full = true
	}
	w.pos = (w.pos + len(p)) % n
	if w.pos == 0 && len(p) > 0 {
		w.full = true
	}
	return len(p), nil
}

func (w *tailWriter) scanLines(p []byte) {
	if w.crash != "" {
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLineBytes - len(w.line); room > 0 {
			w.line = append(w.line, chunk[:min(room, len(chunk))]...)
		}
		if i < 0 {
			return
		}
		w.endLine()
		if w.crash != "" {
			return
		}
		p = p[i+1:]
	}
}

func (w *tailWriter) endLine() {
	for _, prefix := range crashPrefixes {
		if bytes.HasPrefix(w.line, []byte(prefix)) {
			w.crash = strings.TrimSpace(string(w.line)) // allocates once
			break
		}
	}
	w.line = w.line[:0]
}

// Tail returns the kept end of stderr.
func (w *tailWriter) Tail() string {
	if !w.full {
		return string(w.ring[:w.pos])
	}
	return string(w.ring[w.pos:]) + string(w.ring[:w.pos])
}

// CrashLine returns the first Go crash line seen, or "".
func (w *tailWriter) CrashLine() string {
	if w.crash == "" && len(w.line) > 0 {
		w.endLine() // a crash line without its final newline
	}
	return w.crash
}

// lastLine returns the last non-empty line of s, trimmed to maxLineBytes.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > maxLineBytes {
		s = s[:maxLineBytes] + "…"
	}
	return s
}
