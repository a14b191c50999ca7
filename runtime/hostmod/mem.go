package hostmod

import (
	"fmt"

	"github.com/tetratelabs/wazero/api"
)

// Every pointer and length a guest passes is read here and nowhere else.
// The guest side of each read is in sdk/guest/abi_wasip1.go (Go) and
// sdk/guest/c/atf.h (C); sdk/guest/ABI.md is the contract both follow.
//
// A pointer/length pair that does not lie inside the guest's linear memory
// is the guest's bug: the call panics with a *Fault, which wazero turns
// into an error of the guest's call, and the sandbox into a FATAL trap
// naming the function and the bad range. The host never reads or writes
// outside the memory and never panics for any other reason.

// Fault is a guest's misuse of the ABI: a pointer or length outside its
// memory, a module without a memory. It ends the task (FATAL, trap).
type Fault struct {
	Func string // the atf_v1 function, e.g. "log"
	Msg  string
}

func (f *Fault) Error() string { return "atf_v1." + f.Func + ": " + f.Msg }

func fault(fn, format string, args ...any) {
	panic(&Fault{Func: fn, Msg: fmt.Sprintf(format, args...)})
}

// guestMem is the calling module's memory, for one host call.
type guestMem struct {
	fn  string
	mem api.Memory
}

func memOf(fn string, m api.Module) guestMem {
	var mem api.Memory
	if m != nil {
		mem = m.Memory()
	}
	if mem == nil {
		fault(fn, "the module has no linear memory")
	}
	return guestMem{fn: fn, mem: mem}
}

// u32 is a stack value as the i32 the guest passed, unsigned.
func u32(v uint64) uint32 { return uint32(v) }

// i32 is a stack value as the i32 the guest passed, signed.
func i32(v uint64) int32 { return int32(uint32(v)) }

// i64 is a stack value as an i64.
func i64(v uint64) int64 { return int64(v) }

// status puts a result code on the stack as an i32.
func status(v int32) uint64 { return uint64(uint32(v)) }

// bytes returns a copy of guest memory [ptr, ptr+n), at most max bytes long
// (n above max is ErrTooLarge for the caller to report, not a fault).
// A range outside memory faults.
func (g guestMem) bytes(what string, ptr, n uint32) []byte {
	b, ok := g.mem.Read(ptr, n)
	if !ok {
		fault(g.fn, "%s at [%d, %d+%d) is outside the module's memory (%d bytes)", what, ptr, ptr, n, g.mem.Size())
	}
	return append([]byte(nil), b...)
}

// string reads a UTF-8 string (not checked for validity) from memory.
func (g guestMem) string(what string, ptr, n uint32) string {
	b, ok := g.mem.Read(ptr, n)
	if !ok {
		fault(g.fn, "%s at [%d, %d+%d) is outside the module's memory (%d bytes)", what, ptr, ptr, n, g.mem.Size())
	}
	return string(b)
}

// check faults unless [ptr, ptr+n) is inside memory. Output pointers are
// checked before the call does anything, so that a bad one never leaves
// work done and unreported.
func (g guestMem) check(what string, ptr, n uint32) {
	if _, ok := g.mem.Read(ptr, n); !ok {
		fault(g.fn, "%s at [%d, %d+%d) is outside the module's memory (%d bytes)", what, ptr, ptr, n, g.mem.Size())
	}
}

// putU32s writes little-endian u32 values at ptr.
func (g guestMem) putU32s(what string, ptr uint32, vs ...uint32) {
	g.check(what, ptr, uint32(4*len(vs)))
	for i, v := range vs {
		g.mem.WriteUint32Le(ptr+uint32(4*i), v)
	}
}

// put copies b to guest memory at ptr.
func (g guestMem) put(what string, ptr uint32, b []byte) {
	if !g.mem.Write(ptr, b) {
		fault(g.fn, "%s at [%d, %d+%d) is outside the module's memory (%d bytes)", what, ptr, ptr, len(b), g.mem.Size())
	}
}
