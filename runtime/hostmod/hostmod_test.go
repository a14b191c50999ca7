package hostmod_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/hostmod"
)

// harness is one instance of internal/testmodules/wat/atfv1.wat, which
// re-exports every atf_v1 function as call_<name>.
type harness struct {
	t    testing.TB
	mod  api.Module
	task *hostmod.Task
	ctx  context.Context
	next uint32 // bump allocator in the module's memory
	rec  *tracetest.SpanRecorder
	root trace.Span
}

var (
	rtOnce   sync.Once
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	rtErr    error
)

func setup(t testing.TB, task *hostmod.Task) *harness {
	t.Helper()
	wasm := testmodules.WAT(t, "atfv1")
	rtOnce.Do(func() {
		ctx := context.Background()
		rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
		wasi_snapshot_preview1.MustInstantiate(ctx, rt)
		if _, rtErr = hostmod.Instantiate(ctx, rt); rtErr != nil {
			return
		}
		compiled, rtErr = rt.CompileModule(ctx, wasm)
	})
	if rtErr != nil {
		t.Fatal(rtErr)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, root := tp.Tracer("test").Start(context.Background(), "atf.execute")
	if task == nil {
		task = &hostmod.Task{}
	}
	ctx = hostmod.WithTask(ctx, task)
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mod.Close(context.Background()) })
	return &harness{t: t, mod: mod, task: task, ctx: ctx, next: 1024, rec: rec, root: root}
}

// put copies b into the module's memory and returns its pointer and length.
func (h *harness) put(b string) (uint64, uint64) {
	ptr := h.next
	if !h.mod.Memory().Write(ptr, []byte(b)) {
		h.t.Fatalf("write %d bytes at %d", len(b), ptr)
	}
	h.next += uint32(len(b)+7) &^ 7
	return uint64(ptr), uint64(len(b))
}

// alloc reserves n bytes and returns their pointer.
func (h *harness) alloc(n uint32) uint64 {
	ptr := h.next
	h.next += (n + 7) &^ 7
	return uint64(ptr)
}

func (h *harness) u32(ptr uint64, i int) uint32 {
	v, ok := h.mod.Memory().ReadUint32Le(uint32(ptr) + uint32(4*i))
	if !ok {
		h.t.Fatalf("read at %d", ptr)
	}
	return v
}

// call calls atf_v1.<name> through the module and returns its result, or
// the error (a trap) that ended the call.
func (h *harness) call(name string, args ...uint64) (hostmod.Code, error) {
	h.t.Helper()
	res, err := h.mod.ExportedFunction("call_"+name).Call(h.ctx, args...)
	if err != nil {
		return 0, err
	}
	return hostmod.Code(int32(res[0])), nil
}

func (h *harness) mustCall(name string, args ...uint64) hostmod.Code {
	h.t.Helper()
	c, err := h.call(name, args...)
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	return c
}

// result reads the pending result with result_read, in chunks of 5 bytes.
func (h *harness) result() string {
	h.t.Helper()
	buf := h.alloc(5)
	var out []byte
	for {
		n := h.mustCall("result_read", buf, 5)
		if n == 0 {
			return string(out)
		}
		b, _ := h.mod.Memory().Read(uint32(buf), uint32(n))
		out = append(out, b...)
	}
}

func wantFault(t *testing.T, err error, fn, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s with a bad %s: no trap", fn, what)
	}
	if msg := strings.SplitN(err.Error(), "\n", 2)[0]; !strings.Contains(msg, "atf_v1."+fn+": "+what+" at [") || !strings.Contains(msg, "outside the module's memory") {
		t.Fatalf("%s with a bad %s: trap %q, want one naming the function and the range", fn, what, msg)
	}
}

func TestLog(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	task := &hostmod.Task{Limits: hostmod.Limits{MaxLogBytes: 40, MaxLogLine: 16}, Log: func(l slog.Level, msg string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l.String()+" "+msg)
	}}
	h := setup(t, task)
	p, n := h.put("hello")
	if c := h.mustCall("log", hostmod.LevelInfo, p, n); c != hostmod.OK {
		t.Fatalf("log: %s", c)
	}
	p, n = h.put("a very long line that is cut")
	h.mustCall("log", hostmod.LevelError, p, n)
	if c := h.mustCall("log", 7, p, n); c != hostmod.CodeInvalid {
		t.Errorf("level 7: %s, want invalid", c)
	}
	if c := h.mustCall("log", hostmod.LevelWarn, p, n); c != hostmod.CodeLimit {
		t.Errorf("past MaxLogBytes: %s, want limit", c)
	}
	h.mustCall("log", hostmod.LevelWarn, p, n)
	if got := task.LogsDropped(); got != 2 {
		t.Errorf("LogsDropped = %d, want 2", got)
	}
	_, err := h.call("log", hostmod.LevelInfo, 65530, 100)
	wantFault(t, err, "log", "message")
	_, err = h.call("log", hostmod.LevelInfo, 0xffffffff, 2)
	wantFault(t, err, "log", "message")
	want := []string{"INFO hello", "ERROR a very long line…", "WARN atf: log calls past 40 bytes of messages are dropped (max_log_bytes, at most 64 KiB)"}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
	h.root.End()
	events := h.rec.Ended()[0].Events()
	if len(events) != 2 || events[0].Name != "log" || events[0].Attributes[1].Value.AsString() != "hello" {
		t.Errorf("span events %v, want the two lines", events)
	}
}

func TestProgress(t *testing.T) {
	var got []int
	cancel := false
	h := setup(t, &hostmod.Task{Progress: func(p int) bool { got = append(got, p); return cancel }})
	if c := h.mustCall("progress", 10); c != 0 {
		t.Errorf("progress(10) = %d, want 0", c)
	}
	cancel = true
	if c := h.mustCall("progress", 100); c != 1 {
		t.Errorf("progress after cancel = %d, want 1 (cancel requested)", c)
	}
	for _, bad := range []uint64{101, 0xffffffff} {
		if c := h.mustCall("progress", bad); c != hostmod.CodeInvalid {
			t.Errorf("progress(%d) = %s, want invalid", int32(bad), c)
		}
	}
	if fmt.Sprint(got) != "[10 100]" {
		t.Errorf("reports %v", got)
	}
	// Without a Task, progress is 0 and never cancels.
	h = setup(t, nil)
	if c := h.mustCall("progress", 50); c != 0 {
		t.Errorf("no task: %d", c)
	}
}

func TestSpans(t *testing.T) {
	h := setup(t, nil)
	p, n := h.put("fetch")
	outer := h.mustCall("span_start", 0, p, n)
	if outer <= 0 {
		t.Fatalf("span_start: %s", outer)
	}
	p, n = h.put("parse")
	inner := h.mustCall("span_start", uint64(outer), p, n)
	kp, kn := h.put("rows")
	vp, vn := h.put("42")
	if c := h.mustCall("span_set_attribute", uint64(inner), kp, kn, vp, vn); c != hostmod.OK {
		t.Fatalf("span_set_attribute: %s", c)
	}
	mp, mn := h.put("bad row")
	if c := h.mustCall("span_end", uint64(inner), 1, mp, mn); c != hostmod.OK {
		t.Fatalf("span_end: %s", c)
	}
	if c := h.mustCall("span_end", uint64(inner), 0, 0, 0); c != hostmod.CodeInvalid {
		t.Errorf("ending a span twice: %s, want invalid", c)
	}
	if c := h.mustCall("span_start", 99, p, n); c != hostmod.CodeInvalid {
		t.Errorf("unknown parent: %s, want invalid", c)
	}
	_, err := h.call("span_start", 0, 70000, 3)
	wantFault(t, err, "span_start", "name")
	_, err = h.call("span_set_attribute", uint64(outer), kp, kn, 1<<20, 1)
	wantFault(t, err, "span_set_attribute", "value")
	h.task.Finish() // ends outer, left open
	h.root.End()
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range h.rec.Ended() {
		spans[s.Name()] = s
	}
	root, f, pa := spans["atf.execute"], spans["fetch"], spans["parse"]
	if f == nil || pa == nil {
		t.Fatalf("spans %v", spans)
	}
	if f.Parent().SpanID() != root.SpanContext().SpanID() || pa.Parent().SpanID() != f.SpanContext().SpanID() {
		t.Errorf("parse's parent must be fetch, fetch's the execute span")
	}
	if pa.Status().Description != "bad row" || len(pa.Attributes()) != 1 || pa.Attributes()[0].Value.AsString() != "42" {
		t.Errorf("parse: status %v attributes %v", pa.Status(), pa.Attributes())
	}
	if f.Status().Description != "span not ended by the lambda" {
		t.Errorf("fetch left open: status %v", f.Status())
	}
}

// fakeServices is an in-memory Services.
type fakeServices struct {
	mu        sync.Mutex
	kv        map[string]string
	ttl       map[string]time.Duration
	scheduled []hostmod.FollowUp
	fail      error
}

func newFake() *fakeServices {
	return &fakeServices{kv: map[string]string{}, ttl: map[string]time.Duration{}}
}

func (f *fakeServices) KVGet(ctx context.Context, key string) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.kv[key]
	return []byte(v), ok, f.fail
}

func (f *fakeServices) KVSet(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kv[key], f.ttl[key] = string(value), ttl
	return f.fail
}

func (f *fakeServices) KVDelete(ctx context.Context, key string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.kv[key]
	delete(f.kv, key)
	return ok, f.fail
}

func (f *fakeServices) Schedule(ctx context.Context, fu hostmod.FollowUp) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fu.Lambda == "missing" {
		return "", fmt.Errorf("lambda missing: %w", hostmod.ErrNotFound)
	}
	f.scheduled = append(f.scheduled, fu)
	return fmt.Sprintf("task-%d", len(f.scheduled)), f.fail
}

func TestKV(t *testing.T) {
	fake := newFake()
	h := setup(t, &hostmod.Task{Services: fake, Limits: hostmod.Limits{MaxKVValueBytes: 10}})
	kp, kn := h.put("counter")
	vp, vn := h.put("41")
	lenp := h.alloc(4)
	if c := h.mustCall("kv_get", kp, kn, lenp); c != hostmod.CodeNotFound {
		t.Fatalf("get before set: %s", c)
	}
	if c := h.mustCall("kv_set", kp, kn, vp, vn, 60_000); c != hostmod.OK {
		t.Fatalf("set: %s", c)
	}
	if fake.ttl["counter"] != time.Minute {
		t.Errorf("ttl %s, want 1m", fake.ttl["counter"])
	}
	if c := h.mustCall("kv_get", kp, kn, lenp); c != hostmod.OK || h.u32(lenp, 0) != 2 || h.result() != "41" {
		t.Fatalf("get: %s len %d", c, h.u32(lenp, 0))
	}
	big, bn := h.put("0123456789a")
	if c := h.mustCall("kv_set", kp, kn, big, bn, 0); c != hostmod.CodeTooLarge {
		t.Errorf("value over the cap: %s", c)
	}
	if c := h.mustCall("kv_set", kp, kn, vp, vn, uint64(1<<63)); c != hostmod.CodeInvalid {
		t.Errorf("negative ttl: %s", c)
	}
	if c := h.mustCall("kv_set", 0, 0, vp, vn, 0); c != hostmod.CodeInvalid {
		t.Errorf("empty key: %s", c)
	}
	if c := h.mustCall("kv_delete", kp, kn); c != hostmod.OK {
		t.Errorf("delete: %s", c)
	}
	if c := h.mustCall("kv_delete", kp, kn); c != hostmod.CodeNotFound {
		t.Errorf("delete again: %s", c)
	}
	_, err := h.call("kv_get", kp, kn, 65535)
	wantFault(t, err, "kv_get", "value length")
	_, err = h.call("kv_set", kp, kn, 65530, 10, 0)
	wantFault(t, err, "kv_set", "value")
	_, err = h.call("kv_delete", 1<<31, 1)
	wantFault(t, err, "kv_delete", "key")
	_, err = h.call("result_read", 65535, 2)
	wantFault(t, err, "result_read", "buffer")

	fake.fail = errors.New("redis down")
	if c := h.mustCall("kv_set", kp, kn, vp, vn, 0); c != hostmod.CodeUnavailable {
		t.Errorf("failing store: %s", c)
	}
	h = setup(t, nil)
	if c := h.mustCall("kv_get", kp, kn, lenp); c != hostmod.CodeUnavailable {
		t.Errorf("no services: %s", c)
	}
}

func TestSchedule(t *testing.T) {
	fake := newFake()
	h := setup(t, &hostmod.Task{Lambda: "self", Services: fake})
	pp, pn := h.put(`{"step":2}`)
	kp, kn := h.put("k1")
	lenp := h.alloc(4)
	if c := h.mustCall("schedule", 0, 0, pp, pn, 1500, kp, kn, lenp); c != hostmod.OK {
		t.Fatalf("schedule: %s", c)
	}
	if id := h.result(); id != "task-1" || h.u32(lenp, 0) != 6 {
		t.Errorf("id %q len %d", id, h.u32(lenp, 0))
	}
	want := hostmod.FollowUp{Lambda: "self", Payload: []byte(`{"step":2}`), Delay: 1500 * time.Millisecond, Key: "k1"}
	if got := fake.scheduled[0]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("scheduled %+v, want %+v", got, want)
	}
	lp, ln := h.put("missing")
	if c := h.mustCall("schedule", lp, ln, pp, pn, 0, 0, 0, lenp); c != hostmod.CodeNotFound {
		t.Errorf("unknown lambda: %s", c)
	}
	if c := h.mustCall("schedule", 0, 0, pp, pn, uint64(1<<63), 0, 0, lenp); c != hostmod.CodeInvalid {
		t.Errorf("negative delay: %s", c)
	}
	_, err := h.call("schedule", 0, 0, 65000, 1000, 0, 0, 0, lenp)
	wantFault(t, err, "schedule", "payload")
	_, err = h.call("schedule", 0, 0, pp, pn, 0, 0, 0, 65534)
	wantFault(t, err, "schedule", "id length")
	if len(fake.scheduled) != 1 {
		t.Errorf("a faulting call scheduled anyway: %v", fake.scheduled)
	}
}

func TestHTTP(t *testing.T) {
	var hits sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		switch r.URL.Path {
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Token", r.Header.Get("X-Token"))
			w.WriteHeader(201)
			fmt.Fprintf(w, "got %s", body)
		case "/big":
			w.Write(make([]byte, 2048))
		case "/slow":
			time.Sleep(2 * time.Second)
		case "/away":
			http.Redirect(w, r, "http://localhost.invalid/x", http.StatusFound)
		}
	}))
	defer srv.Close()
	h := setup(t, &hostmod.Task{AllowedHosts: []string{"127.0.0.1"}, Limits: hostmod.Limits{MaxHTTPResponseBytes: 1024}})
	mp, mn := h.put("POST")
	hp, hn := h.put("X-Token: abc\r\nContent-Type: text/plain\n")
	bp, bn := h.put("ping")
	resp := h.alloc(12)
	request := func(path string, timeoutMS uint64) hostmod.Code {
		up, un := h.put(srv.URL + path)
		return h.mustCall("http_request", mp, mn, up, un, hp, hn, bp, bn, timeoutMS, resp)
	}
	if c := request("/echo", 0); c != hostmod.OK {
		t.Fatalf("request: %s", c)
	}
	st, hl, bl := h.u32(resp, 0), h.u32(resp, 1), h.u32(resp, 2)
	all := h.result()
	if st != 201 || int(hl+bl) != len(all) || all[hl:] != "got ping" {
		t.Fatalf("status %d headers %d body %d: %q", st, hl, bl, all)
	}
	if headers := all[:hl]; !strings.Contains(headers, "X-Method: POST\n") || !strings.Contains(headers, "X-Token: abc\n") {
		t.Errorf("headers %q", headers)
	}
	if c := request("/big", 0); c != hostmod.CodeTooLarge {
		t.Errorf("response over the cap: %s", c)
	}
	start := time.Now()
	if c := request("/slow", 100); c != hostmod.CodeTimeout || time.Since(start) > time.Second {
		t.Errorf("slow response: %s after %s, want timeout after 100ms", c, time.Since(start))
	}
	if c := request("/away", 0); c != hostmod.CodeDenied {
		t.Errorf("redirect to a host not allowed: %s", c)
	}

	// Denied: another host, another port of a host:port pattern, a bad scheme.
	for _, u := range []string{"http://localhost:1/", "http://169.254.169.254/latest", "file:///etc/passwd", "http://127.0.0.1.nip.io/"} {
		up, un := h.put(u)
		c := h.mustCall("http_request", 0, 0, up, un, 0, 0, 0, 0, 0, resp)
		if c != hostmod.CodeDenied && c != hostmod.CodeInvalid {
			t.Errorf("%s: %s, want denied or invalid", u, c)
		}
	}
	hits.Delete("/echo")
	h2 := setup(t, &hostmod.Task{AllowedHosts: []string{"example.com"}})
	up, un := h2.put(srv.URL + "/echo")
	if c := h2.mustCall("http_request", 0, 0, up, un, 0, 0, 0, 0, 0, h2.alloc(12)); c != hostmod.CodeDenied {
		t.Errorf("host not allowed: %s", c)
	}
	if _, ok := hits.Load("/echo"); ok {
		t.Error("a denied request reached the server")
	}
	bad, bn2 := h.put("no colon here")
	up, un = h.put(srv.URL + "/echo")
	if c := h.mustCall("http_request", 0, 0, up, un, bad, bn2, 0, 0, 0, resp); c != hostmod.CodeInvalid {
		t.Errorf("bad header: %s", c)
	}
	hostH, hostN := h.put("Host: evil.example")
	if c := h.mustCall("http_request", 0, 0, up, un, hostH, hostN, 0, 0, 0, resp); c != hostmod.CodeInvalid {
		t.Errorf("Host header: %s", c)
	}
	_, err := h.call("http_request", 0, 0, up, un, 0, 0, 0, 0, 0, 65530)
	wantFault(t, err, "http_request", "response")
	_, err = h.call("http_request", 0, 0, up, un, 0, 0, 60000, 10000, 0, resp)
	wantFault(t, err, "http_request", "body")
	_, err = h.call("http_request", 0, 0, 0xfffffff0, 0x20, 0, 0, 0, 0, 0, resp)
	wantFault(t, err, "http_request", "url")
}

func TestAllowed(t *testing.T) {
	cases := []struct {
		patterns []string
		url      string
		want     bool
	}{
		{[]string{"api.example.com"}, "https://api.example.com/v1", true},
		{[]string{"api.example.com"}, "https://API.Example.com:8443/v1", true},
		{[]string{"api.example.com"}, "https://example.com/", false},
		{[]string{"api.example.com"}, "https://api.example.com.evil.io/", false},
		{[]string{"api.example.com:443"}, "https://api.example.com/", true},
		{[]string{"api.example.com:443"}, "http://api.example.com/", false},
		{[]string{"*.example.com"}, "https://a.b.example.com/", true},
		{[]string{"*.example.com"}, "https://example.com/", false},
		{[]string{"::1"}, "http://[::1]:8080/", true},
		{nil, "http://127.0.0.1/", false},
	}
	for _, c := range cases {
		u, _ := urlParse(c.url)
		if got := hostmod.Allowed(c.patterns, u); got != c.want {
			t.Errorf("Allowed(%q, %s) = %v, want %v", c.patterns, c.url, got, c.want)
		}
	}
}
