package hostmod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// http_request(method_ptr, method_len, url_ptr, url_len, headers_ptr,
// headers_len, body_ptr, body_len, timeout_ms, response_ptr i32) -> i32
//
// headers are "Name: value" lines separated by "\n" ("\r\n" accepted). On
// OK, 12 bytes are written at response_ptr: u32 LE status, headers_len,
// body_len; the pending result (result_read) is the response headers in
// the same format followed by the body.
func hostHTTPRequest(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	method := g.string("method", u32(stack[0]), u32(stack[1]))
	rawURL := g.string("url", u32(stack[2]), u32(stack[3]))
	rawHeaders := g.string("headers", u32(stack[4]), u32(stack[5]))
	bptr, blen := u32(stack[6]), u32(stack[7])
	timeoutMS := i32(stack[8])
	out := u32(stack[9])
	g.check("body", bptr, blen)
	g.check("response", out, 12)
	if int(blen) > t.limits.MaxHTTPRequestBytes {
		stack[0] = status(int32(CodeTooLarge))
		return
	}
	req, code := t.newRequest(ctx, method, rawURL, rawHeaders)
	if code != OK {
		stack[0] = status(int32(code))
		return
	}
	if blen > 0 {
		body := g.bytes("body", bptr, blen)
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	timeout := t.limits.HTTPTimeout
	if timeoutMS < 0 {
		stack[0] = status(int32(CodeInvalid))
		return
	}
	if timeoutMS > 0 {
		timeout = min(timeout, time.Duration(timeoutMS)*time.Millisecond)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errHTTPTimeout)
	defer cancel()
	res, err := t.client().Do(req.WithContext(ctx))
	if err != nil {
		stack[0] = status(int32(httpCode(ctx, err)))
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, int64(t.limits.MaxHTTPResponseBytes)+1))
	switch {
	case err != nil:
		stack[0] = status(int32(httpCode(ctx, err)))
		return
	case len(body) > t.limits.MaxHTTPResponseBytes:
		stack[0] = status(int32(CodeTooLarge))
		return
	}
	headers := formatHeaders(res.Header)
	t.setResult(append([]byte(headers), body...))
	g.putU32s("response", out, uint32(res.StatusCode), uint32(len(headers)), uint32(len(body)))
	stack[0] = status(int32(OK))
}

var errHTTPTimeout = errors.New("http_request timeout")

func httpCode(ctx context.Context, err error) Code {
	switch {
	case errors.Is(err, ErrDenied):
		return CodeDenied
	case errors.Is(context.Cause(ctx), errHTTPTimeout):
		return CodeTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return CodeTimeout
	}
	return CodeUnavailable
}

// newRequest checks the guest's method, URL and headers.
func (t *Task) newRequest(ctx context.Context, method, rawURL, rawHeaders string) (*http.Request, Code) {
	if method == "" {
		method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(method) { // a token, like a header name
		return nil, CodeInvalid
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, CodeInvalid
	}
	if !Allowed(t.AllowedHosts, u) {
		return nil, CodeDenied
	}
	h, err := ParseHeaders(rawHeaders)
	if err != nil {
		return nil, CodeInvalid
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, CodeInvalid
	}
	req.Header = h
	return req, OK
}

// ParseHeaders parses "Name: value" lines separated by "\n" or "\r\n";
// empty lines are skipped. A Host header is refused: the URL names the
// host.
func ParseHeaders(s string) (http.Header, error) {
	h := http.Header{}
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		if !ok || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("bad header line %q", line)
		}
		if strings.EqualFold(name, "Host") {
			return nil, errors.New("a Host header is not allowed: the URL names the host")
		}
		h.Add(textproto.CanonicalMIMEHeaderKey(name), value)
	}
	return h, nil
}

// formatHeaders is h as "Name: value\n" lines, names sorted.
func formatHeaders(h http.Header) string {
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range h {
			if !yield(k) {
				return
			}
		}
	}) {
		for _, v := range h[k] {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Allowed reports whether u's host matches one of the allowed_hosts
// patterns: "host" (any port), "host:port", "*.domain" (subdomains of
// domain, any port). Names compare case-insensitively.
func Allowed(patterns []string, u *url.URL) bool {
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if host == "" {
		return false
	}
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		ph, pp := p, ""
		if h, pt, err := net.SplitHostPort(p); err == nil {
			ph, pp = h, pt
		}
		if pp != "" && pp != port {
			continue
		}
		if rest, ok := strings.CutPrefix(ph, "*."); ok {
			if strings.HasSuffix(host, "."+rest) {
				return true
			}
			continue
		}
		if ph == strings.Trim(host, "[]") || ph == host {
			return true
		}
	}
	return false
}

// client is the Task's HTTP client, with redirects held to the allowed
// hosts.
func (t *Task) client() *http.Client {
	base := t.HTTPClient
	if base == nil {
		base = defaultClient
	}
	c := *base
	next := base.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !Allowed(t.AllowedHosts, req.URL) {
			return fmt.Errorf("redirect to %s: %w", req.URL.Host, ErrDenied)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &c
}

var defaultClient = func() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the allowed host is the host we connect to
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: tr}
}()
