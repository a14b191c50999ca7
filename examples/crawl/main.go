// Command crawl is an atf lambda written with the Go guest SDK: it fetches
// a page from one of the lambda's allowed_hosts, counts the fetches per
// host in the namespace's key-value store, and schedules itself again for
// the next depth. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -o crawl.wasm ./examples/crawl
//
// and deploy it with allowed_hosts naming the sites it may fetch.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/atfhq/atf/sdk/guest"
)

// Request is the payload.
type Request struct {
	URL string `json:"url"`
	// Depth > 0 schedules a follow-up task with Depth-1.
	Depth int `json:"depth"`
}

// Result is the output.
type Result struct {
	Status int    `json:"status"`
	Bytes  int    `json:"bytes"`
	Visits int    `json:"visits"`
	Next   string `json:"next,omitempty"`
}

func main() { guest.Handle(crawl) }

func crawl(ctx context.Context, payload []byte) ([]byte, error) {
	var req Request
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("crawl: payload must be {\"url\":...,\"depth\":n}: %w", err)
	}
	u, err := url.Parse(req.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("crawl: bad url %q", req.URL)
	}
	guest.Infof("fetching %s (depth %d)", req.URL, req.Depth)

	ctx, span := guest.StartSpan(ctx, "fetch")
	span.SetAttribute("url.full", req.URL)
	body, status, err := fetch(ctx, req.URL)
	span.End(err)
	switch {
	case errors.Is(err, guest.ErrDenied):
		return nil, fmt.Errorf("crawl: %s is not in the lambda's allowed_hosts", u.Host)
	case err != nil:
		return nil, guest.Retry(fmt.Errorf("crawl: fetch %s: %w", req.URL, err))
	}
	if guest.Progress(50) {
		return nil, errors.New("crawl: cancelled")
	}

	visits, err := count("visits:" + u.Host)
	if err != nil {
		return nil, guest.Retry(err)
	}
	res := Result{Status: status, Bytes: len(body), Visits: visits}
	if req.Depth > 0 {
		next, _ := json.Marshal(Request{URL: req.URL, Depth: req.Depth - 1})
		// The key makes a retried task schedule its follow-up once.
		id, err := guest.Schedule("", next, guest.ScheduleOptions{Key: guest.TaskID() + "-next"})
		if err != nil {
			return nil, guest.Retry(fmt.Errorf("crawl: schedule next: %w", err))
		}
		res.Next = id
	}
	guest.Progress(100)
	out, _ := json.Marshal(res)
	return append(out, '\n'), nil
}

func fetch(ctx context.Context, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("User-Agent", "atf-crawl/1")
	res, err := guest.Client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return body, res.StatusCode, err
}

// count increments a counter in the key-value store (not atomically: two
// tasks at once may both write n+1).
func count(key string) (int, error) {
	n := 0
	v, err := guest.KVGet(key)
	switch {
	case err == nil:
		n, _ = strconv.Atoi(string(v))
	case !errors.Is(err, guest.ErrNotFound):
		return 0, err
	}
	n++
	return n, guest.KVSet(key, []byte(strconv.Itoa(n)), 0)
}
