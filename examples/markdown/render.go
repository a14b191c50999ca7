package main

import (
	"bytes"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/parser"
)

// md is the renderer: CommonMark plus the GitHub Flavored Markdown
// extensions (tables, strikethrough, autolinks, task lists), with an id on
// every heading so README-style "#section" links work.
//
// It is safe by default: goldmark's HTML renderer is left without
// html.WithUnsafe, so raw HTML in the input is replaced by
// "<!-- raw HTML omitted -->" and links or images whose URL is
// javascript:, vbscript:, file: or data: (other than data:image/png, gif,
// jpeg, webp) lose that URL. Everything else is HTML-escaped.
var md = goldmark.New(
	goldmark.WithExtensions(extension.GFM),
	goldmark.WithParserOptions(parser.WithAutoHeadingID()),
)

// render turns a Markdown document into an HTML fragment (no <html>, <head>
// or <body>), ready to embed in a page.
func render(src []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(src) + len(src)/2)
	if err := md.Convert(src, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
