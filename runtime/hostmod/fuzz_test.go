package hostmod_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/atfhq/atf/runtime/hostmod"
)

func urlParse(s string) (*url.URL, error) { return url.Parse(s) }

// abiFuncs are the atf_v1 functions and their parameter counts (i64
// parameters at the indexes in i64At).
var abiFuncs = []struct {
	name  string
	arity int
	i64At int // -1: none
}{
	{"log", 3, -1}, {"progress", 1, -1}, {"span_start", 3, -1},
	{"span_set_attribute", 5, -1}, {"span_end", 4, -1},
	{"http_request", 10, -1}, {"result_read", 2, -1},
	{"kv_get", 3, -1}, {"kv_set", 5, 4}, {"kv_delete", 2, -1},
	{"schedule", 8, 4}, {"task_env", 4, -1},
}

// FuzzABI calls atf_v1 functions with arbitrary arguments over arbitrary
// memory: every call must return a code or trap with the function's
// Fault, never panic in the host otherwise (a host bug would surface as a
// trap without "atf_v1.<name>: ").
func FuzzABI(f *testing.F) {
	f.Add(uint8(0), []byte("hello"), uint32(1), uint32(1024), uint32(5), uint32(0), uint32(0), uint32(0), uint32(0), uint32(0))
	f.Add(uint8(5), []byte("GEThttp://127.0.0.1/"), uint32(1024), uint32(3), uint32(1027), uint32(17), uint32(0), uint32(0), uint32(0), uint32(2048))
	f.Add(uint8(8), []byte("k v"), uint32(1024), uint32(1), uint32(1026), uint32(1), uint32(1000), uint32(0), uint32(0), uint32(0))
	f.Add(uint8(10), []byte("lam"), uint32(1024), uint32(3), uint32(0xffffffff), uint32(2), uint32(7), uint32(0), uint32(0), uint32(65532))
	f.Add(uint8(6), []byte{}, uint32(65535), uint32(1), uint32(0), uint32(0), uint32(0), uint32(0), uint32(0), uint32(0))
	f.Add(uint8(11), []byte("ATF_TASK_ID"), uint32(1024), uint32(11), uint32(2048), uint32(3), uint32(0), uint32(0), uint32(0), uint32(0))
	fake := newFake()
	f.Fuzz(func(t *testing.T, which uint8, mem []byte, a0, a1, a2, a3, a4, a5, a6, a7 uint32) {
		fn := abiFuncs[int(which)%len(abiFuncs)]
		h := setup(t, &hostmod.Task{Lambda: "self", Services: fake, AllowedHosts: []string{"127.0.0.1:1"},
			Env: map[string]string{"ATF_TASK_ID": "t-1"}})
		if len(mem) > 4096 {
			mem = mem[:4096]
		}
		h.mod.Memory().Write(1024, mem)
		raw := []uint32{a0, a1, a2, a3, a4, a5, a6, a7, a0 ^ a7, a1 ^ a6}
		args := make([]uint64, fn.arity)
		for i := range args {
			args[i] = uint64(raw[i])
			if i == fn.i64At {
				args[i] = uint64(raw[i]) | uint64(raw[(i+1)%len(raw)])<<32
			}
		}
		if fn.name == "http_request" {
			args[8] = uint64(min(raw[8], 50)) // a 50ms timeout at most
		}
		_, err := h.call(fn.name, args...)
		if err != nil && !strings.HasPrefix(err.Error(), "atf_v1."+fn.name+": ") {
			t.Fatalf("%s%v: host error that is not the guest's fault: %v", fn.name, args, err)
		}
		h.task.Finish()
	})
}

// FuzzParseHeaders: ParseHeaders never panics, and what it accepts
// survives a format/parse round trip.
func FuzzParseHeaders(f *testing.F) {
	f.Add("X-A: 1\nX-B: 2\r\n")
	f.Add("bad")
	f.Add("Host: x")
	f.Add(": empty\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := hostmod.ParseHeaders(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for k, vs := range h {
			for _, v := range vs {
				b.WriteString(k + ": " + v + "\n")
			}
		}
		h2, err := hostmod.ParseHeaders(b.String())
		if err != nil || len(h2) != len(h) {
			t.Fatalf("round trip of %q: %v %v", s, h2, err)
		}
	})
}
