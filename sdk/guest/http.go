package guest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Transport is an http.RoundTripper over atf_v1.http_request: requests go
// out from the executor, only to the lambda's allowed_hosts (another host
// is an error matching ErrDenied). The response body is read whole by the
// host (capped at 4 MiB: ErrTooLarge). The request's context deadline, if
// any, is its timeout (else the host's 30 s).
type Transport struct{}

// Client is an http.Client using Transport.
var Client = &http.Client{Transport: Transport{}}

// RoundTrip implements http.RoundTripper.
func (Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	var headers strings.Builder
	for k, vs := range req.Header {
		for _, v := range vs {
			fmt.Fprintf(&headers, "%s: %s\n", k, v)
		}
	}
	timeoutMS := int32(0)
	if d, ok := req.Context().Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return nil, context.DeadlineExceeded
		}
		timeoutMS = int32(min(left.Milliseconds()+1, 1<<31-1))
	}
	status, hlen, blen, c := hostHTTP(req.Method, req.URL.String(), headers.String(), body, timeoutMS)
	if err := check("http_request", c); err != nil {
		return nil, err
	}
	all := readResult(hlen + blen)
	if uint32(len(all)) < hlen {
		return nil, &Error{Op: "http_request", Code: codeUnavailable}
	}
	h := http.Header{}
	for _, line := range strings.Split(string(all[:hlen]), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			h.Add(k, v)
		}
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(int(status))),
		StatusCode:    int(status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(all[hlen:])),
		ContentLength: int64(blen),
		Request:       req,
	}, nil
}
