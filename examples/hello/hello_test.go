package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/atfhq/atf/examples/internal/golden"

	"github.com/atfhq/atf/examples/internal/wasmrun"
)

func TestGreet(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "name", in: `{"name":"Ada"}`, want: `{"greeting":"Hello, Ada!"}`},
		{name: "unicode", in: `{"name":"Grace Hopper 🐛"}`, want: `{"greeting":"Hello, Grace Hopper 🐛!"}`},
		{name: "trimmed", in: `{"name":"  Ada\n"}`, want: `{"greeting":"Hello, Ada!"}`},
		{name: "extra fields ignored", in: `{"name":"Ada","lang":"en"}`, want: `{"greeting":"Hello, Ada!"}`},
		{name: "empty name", in: `{"name":""}`, want: `{"greeting":"Hello, world!"}`},
		{name: "blank name", in: `{"name":"   "}`, want: `{"greeting":"Hello, world!"}`},
		{name: "absent name", in: `{}`, want: `{"greeting":"Hello, world!"}`},
		{name: "null name", in: `{"name":null}`, want: `{"greeting":"Hello, world!"}`},
		{name: "null payload", in: `null`, want: `{"greeting":"Hello, world!"}`},
		{name: "empty payload", in: ``, want: `{"greeting":"Hello, world!"}`},
		{name: "whitespace payload", in: " \n", want: `{"greeting":"Hello, world!"}`},
		{name: "html is escaped", in: `{"name":"<b>"}`, want: `{"greeting":"Hello, \u003cb\u003e!"}`},
		{name: "malformed", in: `{"name":`, wantErr: "payload must be a JSON object"},
		{name: "not an object", in: `"Ada"`, wantErr: "payload must be a JSON object"},
		{name: "name not a string", in: `{"name":42}`, wantErr: "payload must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := greet([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("greet(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("greet(%q): %v", tt.in, err)
			}
			if string(got) != tt.want+"\n" {
				t.Errorf("greet(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{name: "success", in: `{"name":"Ada"}`, wantCode: 0, wantOut: "{\"greeting\":\"Hello, Ada!\"}\n"},
		{name: "malformed is fatal", in: `{`, wantCode: 1, wantStderr: "hello: payload must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(strings.NewReader(tt.in), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if stdout.String() != tt.wantOut {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.wantOut)
			}
			if !strings.HasPrefix(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want prefix %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// TestWasm builds the lambda for GOOS=wasip1 and runs it in wazero with the
// payload shown in the README.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 binary; skipped with -short")
	}
	in := golden.Read(t, "testdata/ada.json")
	stdout, stderr, code := wasmrun.Run(t, ".", in)
	if code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
	}
	golden.Check(t, "testdata/ada.golden", stdout)

	_, stderr, code = wasmrun.Run(t, ".", []byte(`{"name":`))
	if code != 1 || !bytes.Contains(stderr, []byte("payload must be a JSON object")) {
		t.Errorf("malformed payload: exit code %d, stderr %q; want 1 and a message", code, stderr)
	}
}
