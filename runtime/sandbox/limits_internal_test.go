package sandbox

import (
	"bytes"
	"testing"
)

// A pooled linear memory comes back zeroed, keeps its contents when it
// grows, and its new bytes are zero.
func TestLinearMemoryPoolZeroes(t *testing.T) {
	for range 3 { // the second and third rounds reuse dirty pooled buffers
		m := newMemoryLimit(64).Allocate(0, 0).(*linearMemory)
		b := m.Reallocate(wasmPageBytes)
		if len(b) != wasmPageBytes || !allZero(b[:cap(b)]) {
			t.Fatalf("fresh memory: len %d, zero %v", len(b), allZero(b[:cap(b)]))
		}
		for i := range b {
			b[i] = 0xAA
		}
		g := m.Reallocate(5 * wasmPageBytes)
		if len(g) != 5*wasmPageBytes {
			t.Fatalf("grown len %d", len(g))
		}
		if !bytes.Equal(g[:wasmPageBytes], bytes.Repeat([]byte{0xAA}, wasmPageBytes)) {
			t.Fatal("growth lost the old contents")
		}
		if !allZero(g[wasmPageBytes:cap(g)]) {
			t.Fatal("grown bytes are not zero")
		}
		for i := range g {
			g[i] = 0x55
		}
		m.Free()
	}
	if bufClass(maxPooledBuf+1) != -1 || bufClass(1) != 0 || bufClass(wasmPageBytes+1) != 1 {
		t.Fatal("bufClass boundaries")
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
