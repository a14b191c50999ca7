package main

import (
	"bytes"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/atfhq/atf/examples/internal/golden"

	"github.com/atfhq/atf/examples/internal/wasmrun"
)

// TestRender checks one feature per case; the golden files check whole
// documents.
func TestRender(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the whole output
	}{
		{name: "empty", in: "", want: ""},
		{name: "paragraph", in: "Hello, *world*.", want: "<p>Hello, <em>world</em>.</p>\n"},
		{name: "heading id", in: "## Getting started", want: "<h2 id=\"getting-started\">Getting started</h2>\n"},
		{name: "strikethrough", in: "~~old~~ new", want: "<p><del>old</del> new</p>\n"},
		{name: "autolink url", in: "see https://example.com/a?b=1", want: "<p>see <a href=\"https://example.com/a?b=1\">https://example.com/a?b=1</a></p>\n"},
		{name: "autolink www", in: "www.example.com", want: "<p><a href=\"http://www.example.com\">www.example.com</a></p>\n"},
		{name: "autolink email", in: "ada@example.com", want: "<p><a href=\"mailto:ada@example.com\">ada@example.com</a></p>\n"},
		{name: "task list", in: "- [x] done\n- [ ] todo", want: "<ul>\n<li><input checked=\"\" disabled=\"\" type=\"checkbox\"> done</li>\n<li><input disabled=\"\" type=\"checkbox\"> todo</li>\n</ul>\n"},
		{name: "table", in: "| a | b |\n|---|--:|\n| 1 | 2 |", want: "<table>\n<thead>\n<tr>\n<th>a</th>\n<th style=\"text-align:right\">b</th>\n</tr>\n</thead>\n<tbody>\n<tr>\n<td>1</td>\n<td style=\"text-align:right\">2</td>\n</tr>\n</tbody>\n</table>\n"},
		{name: "text is escaped", in: "a < b & c > d", want: "<p>a &lt; b &amp; c &gt; d</p>\n"},
		{name: "raw html block omitted", in: "<script>alert(1)</script>", want: "<!-- raw HTML omitted -->\n"},
		{name: "inline html omitted", in: "x <b onclick=\"f()\">y</b>", want: "<p>x <!-- raw HTML omitted -->y<!-- raw HTML omitted --></p>\n"},
		{name: "javascript link dropped", in: "[x](javascript:alert(1))", want: "<p><a href=\"\">x</a></p>\n"},
		{name: "javascript autolink dropped", in: "<javascript:alert(1)>", want: "<p><a href=\"\">javascript:alert(1)</a></p>\n"},
		{name: "data image kept", in: "![dot](data:image/png;base64,iVBORw0KGgo=)", want: "<p><img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"dot\"></p>\n"},
		{name: "data html dropped", in: "[x](data:text/html,hi)", want: "<p><a href=\"\">x</a></p>\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("render(%q) =\n%s\nwant\n%s", tt.in, got, tt.want)
			}
		})
	}
}

// TestGolden renders each testdata/*.md and compares it with the .html
// beside it; go test -update rewrites the .html files.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.md")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no testdata/*.md (%v)", err)
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			got, err := render(golden.Read(t, in))
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, strings.TrimSuffix(in, ".md")+".html", got)
		})
	}
}

// TestSafe checks that every tag in the rendered testdata/unsafe.md is one
// Markdown itself produces, with no event handler and no script URL.
func TestSafe(t *testing.T) {
	got, err := render(golden.Read(t, "testdata/unsafe.md"))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"a": true, "blockquote": true, "code": true, "del": true, "em": true,
		"h1": true, "img": true, "input": true, "li": true, "ol": true, "p": true, "pre": true,
		"strong": true, "table": true, "tbody": true, "td": true, "th": true, "thead": true,
		"tr": true, "ul": true}
	tags := tagRE.FindAllStringSubmatch(string(got), -1)
	if len(tags) == 0 {
		t.Fatal("no tags in output")
	}
	for _, m := range tags {
		tag, name, attrs := m[0], strings.ToLower(m[1]), strings.ToLower(m[2])
		if !allowed[name] {
			t.Errorf("output has a <%s> tag: %s", name, tag)
		}
		if onRE.MatchString(attrs) {
			t.Errorf("output has an event handler: %s", tag)
		}
		for _, scheme := range []string{"javascript:", "vbscript:", "data:text"} {
			if strings.Contains(attrs, `="`+scheme) {
				t.Errorf("output has a %s URL: %s", scheme, tag)
			}
		}
	}
}

var (
	tagRE = regexp.MustCompile(`<([a-zA-Z][a-zA-Z0-9]*)([^>]*)>`)
	onRE  = regexp.MustCompile(`(^|\s)on[a-z]+\s*=`)
)

func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(strings.NewReader("# Hi"), &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	if want := "<h1 id=\"hi\">Hi</h1>\n"; stdout.String() != want {
		t.Errorf("stdout = %q, want %q", stdout.String(), want)
	}
}

// TestWasm builds the lambda for GOOS=wasip1 and runs it in wazero on the
// README-like document in testdata.
func TestWasm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 binary; skipped with -short")
	}
	stdout, stderr, code := wasmrun.Run(t, ".", golden.Read(t, "testdata/readme.md"))
	if code != 0 {
		t.Fatalf("exit code %d, stderr:\n%s", code, stderr)
	}
	if golden.Updating() {
		return // TestGolden writes the file.
	}
	golden.Check(t, "testdata/readme.html", stdout)
}
