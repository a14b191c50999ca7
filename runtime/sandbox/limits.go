package sandbox

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

const (
	wasmPageBytes = 64 << 10
	mib           = 1 << 20
)

// memoryLimit caps one instance's linear memory and remembers whether the
// module asked for more. It is a wazero experimental.MemoryAllocator, passed
// to InstantiateModule in the context, so each task gets its own limit while
// every task of a module shares one compiled module and one wazero.Runtime.
//
// Why not wazero.RuntimeConfig.WithMemoryLimitPages: wazero checks that
// limit in MemoryInstance.Grow before the allocator is consulted and then
// just returns -1 to the guest, so the host cannot tell "the module hit its
// limit" from "the module failed for another reason". Here the allocator is
// the limit: Reallocate beyond it records the hit and returns nil, which
// wazero turns into memory.grow returning -1, exactly what the guest would
// see at a declared maximum. See runtime/RATIONALE.md.
type memoryLimit struct {
	limitBytes uint64
	hit        atomic.Bool
	requested  atomic.Uint64 // largest refused size, for the message
	peak       atomic.Uint64 // largest size granted, for telemetry
}

// Peak is the largest linear memory granted, in bytes.
func (l *memoryLimit) Peak() uint64 { return l.peak.Load() }

func newMemoryLimit(memoryMB int) *memoryLimit {
	return &memoryLimit{limitBytes: uint64(memoryMB) * mib}
}

// Allocate implements experimental.MemoryAllocator.
func (l *memoryLimit) Allocate(capBytes, maxBytes uint64) experimental.LinearMemory {
	return &linearMemory{limit: l}
}

// resetCall forgets a refused request before a reactor instance's next
// task; the peak stays the instance's.
func (l *memoryLimit) resetCall() {
	l.hit.Store(false)
	l.requested.Store(0)
}

// Hit reports whether the module asked for memory beyond the limit.
func (l *memoryLimit) Hit() bool { return l.hit.Load() }

// initialMemoryError is panicked by the allocator when the module's declared
// initial memory is above the limit: wazero offers the allocator no way to
// fail that first allocation, and Run recovers it around InstantiateModule
// (wazero holds no locks and has registered nothing at that point).
type initialMemoryError struct{ requested, limit uint64 }

func (e *initialMemoryError) Error() string {
	return fmt.Sprintf("module declares %d MiB of initial memory, above its limit of %d MiB", e.requested/mib, e.limit/mib)
}

// linearMemory is a non-shared linear memory that grows geometrically
// (like wazero's default) up to the limit. Its buffers come from and go
// back to bufPool, so a task does not allocate (and the GC does not scan
// and free) its instance's memory.
type linearMemory struct {
	limit   *memoryLimit
	buf     []byte
	started bool
}

// Reallocate implements experimental.LinearMemory. Bytes between len and
// cap are always zero: a buffer is cleared when it is taken from the pool,
// and memory never shrinks.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit.limitBytes {
		m.limit.hit.Store(true)
		m.limit.requested.Store(size)
		if !m.started {
			panic(&initialMemoryError{requested: size, limit: m.limit.limitBytes})
		}
		return nil
	}
	m.started = true
	if size > m.limit.peak.Load() {
		m.limit.peak.Store(size)
	}
	n := int(size)
	if n <= cap(m.buf) {
		m.buf = m.buf[:n]
		return m.buf
	}
	grown := getBuf(max(n, 2*cap(m.buf)))[:n]
	copy(grown, m.buf)
	putBuf(m.buf)
	m.buf = grown
	return m.buf
}

// Free implements experimental.LinearMemory: wazero calls it when the
// instance is closed, after which it never touches the buffer again.
func (m *linearMemory) Free() {
	putBuf(m.buf)
	m.buf = nil
}

// bufPool keeps freed linear memories by capacity class: a power of two
// from one wasm page to maxPooledBuf. Bigger memories are left to the GC.
var bufPool [bufClasses]sync.Pool

const (
	minPooledShift = 16 // one wasm page
	bufClasses     = 9  // 64 KiB … 16 MiB
	maxPooledBuf   = 1 << (minPooledShift + bufClasses - 1)
)

// bufClass is the smallest class holding n bytes; -1 when n is too big.
func bufClass(n int) int {
	if n > maxPooledBuf {
		return -1
	}
	c := 0
	for 1<<(minPooledShift+c) < n {
		c++
	}
	return c
}

// getBuf returns a zeroed buffer of capacity >= n (its length is its
// capacity).
func getBuf(n int) []byte {
	c := bufClass(n)
	if c < 0 {
		return make([]byte, n)
	}
	if p, ok := bufPool[c].Get().(*[]byte); ok {
		b := *p
		clear(b)
		return b
	}
	return make([]byte, 1<<(minPooledShift+c))
}

// putBuf gives a buffer of a pooled class back.
func putBuf(b []byte) {
	c := bufClass(cap(b))
	if c < 0 || cap(b) != 1<<(minPooledShift+c) {
		return
	}
	b = b[:cap(b)]
	bufPool[c].Put(&b)
}
