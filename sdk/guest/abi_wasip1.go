//go:build wasip1

package guest

import "unsafe"

// The guest side of atf_v1 (ABI.md). Every pointer and length passed to the
// host is made here; runtime/hostmod/mem.go reads them on the other side.
// Strings and slices are passed as (pointer, length) of their backing
// array; the compiler keeps them alive for the call.

//go:wasmimport atf_v1 log
func atfLog(level int32, msgPtr unsafe.Pointer, msgLen uint32) int32

//go:wasmimport atf_v1 progress
func atfProgress(percent int32) int32

//go:wasmimport atf_v1 span_start
func atfSpanStart(parent int32, namePtr unsafe.Pointer, nameLen uint32) int32

//go:wasmimport atf_v1 span_set_attribute
func atfSpanSetAttribute(span int32, keyPtr unsafe.Pointer, keyLen uint32, valPtr unsafe.Pointer, valLen uint32) int32

//go:wasmimport atf_v1 span_end
func atfSpanEnd(span int32, isError int32, msgPtr unsafe.Pointer, msgLen uint32) int32

//go:wasmimport atf_v1 http_request
func atfHTTPRequest(methodPtr unsafe.Pointer, methodLen uint32, urlPtr unsafe.Pointer, urlLen uint32,
	headersPtr unsafe.Pointer, headersLen uint32, bodyPtr unsafe.Pointer, bodyLen uint32,
	timeoutMS int32, response unsafe.Pointer) int32

//go:wasmimport atf_v1 result_read
func atfResultRead(bufPtr unsafe.Pointer, bufLen uint32) int32

//go:wasmimport atf_v1 task_env
func atfTaskEnv(namePtr unsafe.Pointer, nameLen uint32, bufPtr unsafe.Pointer, bufLen uint32) int32

//go:wasmimport atf_v1 kv_get
func atfKVGet(keyPtr unsafe.Pointer, keyLen uint32, valueLen unsafe.Pointer) int32

//go:wasmimport atf_v1 kv_set
func atfKVSet(keyPtr unsafe.Pointer, keyLen uint32, valPtr unsafe.Pointer, valLen uint32, ttlMS int64) int32

//go:wasmimport atf_v1 kv_delete
func atfKVDelete(keyPtr unsafe.Pointer, keyLen uint32) int32

//go:wasmimport atf_v1 schedule
func atfSchedule(lambdaPtr unsafe.Pointer, lambdaLen uint32, payloadPtr unsafe.Pointer, payloadLen uint32,
	delayMS int64, keyPtr unsafe.Pointer, keyLen uint32, idLen unsafe.Pointer) int32

func sp(s string) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.StringData(s)), uint32(len(s))
}
func bp(b []byte) (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b))
}

func hostLog(level int32, msg string) int32 {
	p, n := sp(msg)
	return atfLog(level, p, n)
}

func hostProgress(percent int32) int32 { return atfProgress(percent) }

func hostSpanStart(parent int32, name string) int32 {
	p, n := sp(name)
	return atfSpanStart(parent, p, n)
}

func hostSpanSetAttribute(span int32, key, value string) int32 {
	kp, kn := sp(key)
	vp, vn := sp(value)
	return atfSpanSetAttribute(span, kp, kn, vp, vn)
}

func hostSpanEnd(span, isError int32, msg string) int32 {
	p, n := sp(msg)
	return atfSpanEnd(span, isError, p, n)
}

// hostHTTP returns the response's status and the lengths of its headers
// and body, which follow as the pending result.
func hostHTTP(method, url, headers string, body []byte, timeoutMS int32) (status, headersLen, bodyLen uint32, code int32) {
	mp, mn := sp(method)
	up, un := sp(url)
	hp, hn := sp(headers)
	bdp, bdn := bp(body)
	var resp [3]uint32
	code = atfHTTPRequest(mp, mn, up, un, hp, hn, bdp, bdn, timeoutMS, unsafe.Pointer(&resp))
	return resp[0], resp[1], resp[2], code
}

// readResult reads n bytes of the pending result.
func readResult(n uint32) []byte {
	buf := make([]byte, n)
	for off := uint32(0); off < n; {
		p, _ := bp(buf[off:])
		k := atfResultRead(p, n-off)
		if k <= 0 {
			return buf[:off]
		}
		off += uint32(k)
	}
	return buf
}

// hostTaskEnv returns the task's environment variable name, or a negative
// code (NOT_FOUND when it is not set). A value over 64 bytes takes a second
// call with a buffer of the length the first returned.
func hostTaskEnv(name string) (string, int32) {
	np, nn := sp(name)
	var small [64]byte
	buf := small[:]
	for range 2 {
		p, k := bp(buf)
		c := atfTaskEnv(np, nn, p, k)
		if c < 0 {
			return "", c
		}
		if uint32(c) <= k {
			return string(buf[:c]), codeOK
		}
		buf = make([]byte, c)
	}
	return "", codeUnavailable // unreachable: a task's environment does not change
}

func hostKVGet(key string) (uint32, int32) {
	kp, kn := sp(key)
	var n uint32
	c := atfKVGet(kp, kn, unsafe.Pointer(&n))
	return n, c
}

func hostKVSet(key string, value []byte, ttlMS int64) int32 {
	kp, kn := sp(key)
	vp, vn := bp(value)
	return atfKVSet(kp, kn, vp, vn, ttlMS)
}

func hostKVDelete(key string) int32 {
	kp, kn := sp(key)
	return atfKVDelete(kp, kn)
}

func hostSchedule(lambda string, payload []byte, delayMS int64, key string) (uint32, int32) {
	lp, ln := sp(lambda)
	pp, pn := bp(payload)
	kp, kn := sp(key)
	var n uint32
	c := atfSchedule(lp, ln, pp, pn, delayMS, kp, kn, unsafe.Pointer(&n))
	return n, c
}
