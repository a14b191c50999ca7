package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Instrumentation: how a module is made stoppable and its call stack bounded
// without wazero's WithCloseOnContextDone (which calls into Go on every loop
// back-edge: ~8x slower CPU-bound code; see runtime/RATIONALE.md).
//
// Before compiling, the module's binary is rewritten (instrument):
//
//   - three mutable i32 globals are appended: $stop (0; the host sets it
//     to 1 to stop the module) and $budget (the remaining call-stack
//     budget), both exported, and $fuel (calls left before the next visit
//     to Go);
//   - every loop head counts down a local $f (set to loopPeriod at
//     function entry); the loop's body becomes the then branch of the
//     test, and when $f reaches zero the else branch, the slow path, calls
//     memory.grow(0) (an exit to Go, so the Go scheduler can stop the
//     world), traps if $stop is set and branches back to the loop head
//     (branch depths inside the loop are raised by one for the new if);
//   - functions that can recur (a cycle in the call graph) are threaded:
//     an inner clone takes the stack budget and the fuel as two extra
//     parameters and returns the fuel, charges its frame weight (4 +
//     params + locals) to the budget and counts the fuel down, with one
//     test for both going below zero; its slow path (trap on the budget,
//     else the same visit to Go) calls the clone again with fresh fuel
//     instead of rejoining the body. Recursive calls between clones
//     move registers, not globals. The original index becomes a wrapper
//     that passes the globals in. Other functions count $fuel at entry
//     only if they loop, are address-taken or would run too long
//     unchecked, and charge $budget only if the chain of uncharged frames
//     could grow too deep (callgraph.go);
//   - a start section is removed and its function exported as startExport,
//     so no guest code runs inside InstantiateModule, where the host could
//     not yet reach $stop; the sandbox calls it first.
//
// Appending globals, types and functions shifts no index, so calls, the
// name section, element segments and exports stay valid; DWARF custom sections (.debug_*),
// whose code offsets would be stale, are dropped. The original bytes stay
// the module's identity (Job.SHA256); instrumentation is deterministic, so
// wazero's on-disk cache (keyed by the bytes compiled) still hits.
//
// The decoder knows every instruction wazero v1.12 accepts by default (MVP,
// sign extension, saturating truncation, bulk memory, reference types,
// multi-value, SIMD). Anything else is refused: instrumenting a module
// incorrectly would let it escape the time limit, so unknown means no. So
// that the guest cannot reach the new globals or types, every global index
// and type index in its code must be below the module's own counts.

const (
	stopExport   = "__atf_stop"
	budgetExport = "__atf_budget"
	startExport  = "__atf_start"
)

// stackUnitBytes is what one unit of frame weight stands for when
// Config.MaxStackBytes is turned into a budget: wazero's frames take about
// 8-16 bytes per param, local and spill slot plus a fixed header.
const stackUnitBytes = 16

// instrumented is a rewritten module.
type instrumented struct {
	wasm     []byte
	hasStart bool // the start section became startExport
	// stats counts the module's functions by treatment (callgraph.go):
	// recursive (threaded), counting fuel at entry, neither; stack counts
	// the non-recursive ones charging the stack budget.
	stats struct{ rec, fuel, plain, stack int }
}

var errInstrument = errors.New("instrument")

func instrErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInstrument, fmt.Sprintf(format, args...))
}

// section ids.
const (
	secCustom   = 0
	secType     = 1
	secImport   = 2
	secFunction = 3
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secElem     = 9
	secCode     = 10
	secData     = 11
	secTag      = 13
)

type funcType struct {
	params, results []byte
}

type rawSection struct {
	id   byte
	body []byte
}

// instrument rewrites wasm as described above; budget is the initial call
// stack budget in weight units.
func instrument(wasm []byte, budget int32) (instrumented, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], wasmMagic) || !bytes.Equal(wasm[4:8], []byte{1, 0, 0, 0}) {
		return instrumented{}, instrErr("not a WebAssembly 1.0 module")
	}
	var secs []rawSection
	r := reader{b: wasm, i: 8}
	for !r.done() {
		id := r.byte()
		n := r.u32()
		body := r.bytes(int(n))
		if r.err != nil {
			return instrumented{}, r.err
		}
		secs = append(secs, rawSection{id: id, body: body})
	}

	var (
		types         []funcType
		importFuncs   int
		importGlobals int
		funcTypes     []uint32
		defGlobals    int
		startFunc     = -1
		hasMemory     bool
		importTables  bool
		codeSec       []byte
		elemSec       []byte
		globalSec     []byte
	)
	for _, s := range secs {
		if err := checkCounts(s); err != nil {
			return instrumented{}, err
		}
	}
	for _, s := range secs {
		sr := reader{b: s.body}
		switch s.id {
		case secType:
			n := sr.u32()
			for range n {
				if sr.byte() != 0x60 {
					return instrumented{}, instrErr("type section: only function types are supported")
				}
				var ft funcType
				ft.params = sr.valtypes()
				ft.results = sr.valtypes()
				types = append(types, ft)
			}
		case secImport:
			n := sr.u32()
			for range n {
				sr.name()
				sr.name()
				switch kind := sr.byte(); kind {
				case 0:
					if t := sr.u32(); sr.err == nil && int(t) >= len(types) {
						return instrumented{}, instrErr("import type index %d out of range", t)
					}
					importFuncs++
				case 1:
					sr.byte()
					sr.limits()
					importTables = true
				case 2:
					sr.limits()
					hasMemory = true
				case 3:
					sr.byte()
					sr.byte()
					importGlobals++
				default:
					return instrumented{}, instrErr("import kind %d is not supported", kind)
				}
			}
		case secFunction:
			n := sr.u32()
			for range n {
				funcTypes = append(funcTypes, sr.u32())
			}
		case secGlobal:
			defGlobals = int(sr.u32())
			globalSec = s.body
		case secElem:
			elemSec = s.body
			continue
		case secCode:
			codeSec = s.body
			continue
		case secMemory:
			if sr.u32() > 0 {
				hasMemory = true
			}
		case secStart:
			startFunc = int(sr.u32())
			if startFunc >= importFuncs+len(funcTypes) {
				return instrumented{}, instrErr("start function %d out of range", startFunc)
			}
		case secExport:
			// Indices past the module's own (invalid, so wazero would refuse
			// them) would name what instrument appends: the inner clones
			// (callable with any budget and fuel) or its globals.
			n := sr.u32()
			for range n {
				name := sr.name()
				kind := sr.byte()
				idx := int(sr.u32())
				if (kind == 0 && idx >= importFuncs+len(funcTypes)) || (kind == 3 && idx >= importGlobals+defGlobals) {
					return instrumented{}, instrErr("export %q: index %d out of range", name, idx)
				}
				if strings.HasPrefix(name, "__atf_") {
					return instrumented{}, instrErr("export %q uses the prefix __atf_, which atf reserves", name)
				}
			}
		default:
			continue
		}
		if sr.err != nil {
			return instrumented{}, instrErr("section %d: %v", s.id, sr.err)
		}
	}
	for _, t := range funcTypes {
		if int(t) >= len(types) {
			return instrumented{}, instrErr("function type index %d out of range", t)
		}
	}

	nGlobals := importGlobals + defGlobals
	stopIdx, budgetIdx, fuelIdx := uint32(nGlobals), uint32(nGlobals+1), uint32(nGlobals+2)
	nTypes := uint32(len(types))
	extraTypes := map[string]uint32{} // params 0xFF results -> new type index
	var newTypes []funcType
	addType := func(ft funcType) uint32 {
		key := string(ft.params) + "\xff" + string(ft.results)
		idx, ok := extraTypes[key]
		if !ok {
			idx = nTypes + uint32(len(newTypes))
			extraTypes[key] = idx
			newTypes = append(newTypes, ft)
		}
		return idx
	}
	// wrapperType is the block type of a function's wrapper block.
	wrapperType := func(results []byte) []byte {
		switch len(results) {
		case 0:
			return []byte{0x40}
		case 1:
			return []byte{results[0]}
		}
		return appendS33(nil, int64(addType(funcType{results: results})))
	}

	ci := &codeInfo{
		types: types, funcTypes: funcTypes, importFuncs: importFuncs,
		nFuncs:   uint32(importFuncs + len(funcTypes)),
		nGlobals: uint32(nGlobals), nTypes: nTypes, stop: stopIdx, budget: budgetIdx, fuel: fuelIdx,
		wrapperType: wrapperType,
	}
	if err := ci.scan(codeSec, elemSec, globalSec, importTables); err != nil {
		return instrumented{}, err
	}
	var innerTypes []uint32 // function section entries of the inner clones
	for i := range ci.fns {
		f := &ci.fns[i]
		if !f.rec {
			continue
		}
		ft := types[funcTypes[i]]
		f.inner = ci.nFuncs + uint32(len(innerTypes))
		innerTypes = append(innerTypes, addType(funcType{
			params:  append(slices.Clip(ft.params), 0x7F, 0x7F),
			results: append(slices.Clip(ft.results), 0x7F),
		}))
	}

	var out []byte
	out = append(out, wasm[:8]...)
	emit := func(id byte, body []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	sawMemory, sawGlobal, sawExport := hasMemory, false, false
	// Sections must stay in order; a memory (5), globals (6) and exports
	// (7) are added just before the first section that follows them when
	// absent. A module without memory gets an empty one: the slow path of
	// the fuel check calls memory.grow(0).
	addMissing := func(before byte) {
		if !sawMemory && sectionOrder(before) > sectionOrder(secMemory) {
			emit(secMemory, []byte{1, 0, 0}) // one memory, min 0, no max
			sawMemory = true
		}
		if !sawGlobal && sectionOrder(before) > sectionOrder(secGlobal) {
			emit(secGlobal, globalSection(nil, 0, budget))
			sawGlobal = true
		}
		if !sawExport && sectionOrder(before) > sectionOrder(secExport) {
			emit(secExport, exportSection(nil, 0, stopIdx, budgetIdx, startFunc))
			sawExport = true
		}
	}
	for _, s := range secs {
		if s.id != secCustom {
			addMissing(s.id)
		}
		switch s.id {
		case secCustom:
			sr := reader{b: s.body}
			if name := sr.name(); sr.err == nil && (strings.HasPrefix(name, ".debug_") || name == "sourceMappingURL" || name == "external_debug_info") {
				continue
			} else if name == "name" && !nameSectionOK(s.body[sr.i:]) {
				continue // optional; wazero would size maps by its counts
			}
			emit(s.id, s.body)
		case secType:
			// re-emitted at the end with the wrapper types; keep a slot
			emit(s.id, nil) // placeholder, patched below
		case secGlobal:
			sr := reader{b: s.body}
			n := sr.u32()
			emit(s.id, globalSection(s.body[sr.i:], n, budget))
			sawGlobal = true
		case secExport:
			sr := reader{b: s.body}
			n := sr.u32()
			emit(s.id, exportSection(s.body[sr.i:], n, stopIdx, budgetIdx, startFunc))
			sawExport = true
		case secStart:
			// removed: exported as startExport instead
		case secFunction:
			body := appendU32(nil, uint32(len(funcTypes)+len(innerTypes)))
			for _, t := range append(slices.Clip(funcTypes), innerTypes...) {
				body = appendU32(body, t)
			}
			emit(s.id, body)
		case secCode:
			body, err := rewriteCode(ci)
			if err != nil {
				return instrumented{}, err
			}
			emit(s.id, body)
		default:
			emit(s.id, s.body)
		}
	}
	addMissing(0xFE)

	// Rebuild with the final type section (wrapper types are known only
	// after the code was rewritten).
	var typeBody []byte
	typeBody = appendU32(typeBody, nTypes+uint32(len(newTypes)))
	for _, t := range append(append([]funcType(nil), types...), newTypes...) {
		typeBody = append(typeBody, 0x60)
		typeBody = appendU32(typeBody, uint32(len(t.params)))
		typeBody = append(typeBody, t.params...)
		typeBody = appendU32(typeBody, uint32(len(t.results)))
		typeBody = append(typeBody, t.results...)
	}
	final := append([]byte(nil), out[:8]...)
	hadTypes := false
	rr := reader{b: out, i: 8}
	for !rr.done() {
		id := rr.byte()
		n := rr.u32()
		body := rr.bytes(int(n))
		if id == secType {
			body, hadTypes = typeBody, true
		}
		final = append(final, id)
		final = appendU32(final, uint32(len(body)))
		final = append(final, body...)
	}
	if !hadTypes && len(newTypes) > 0 {
		return instrumented{}, instrErr("multi-value function without a type section")
	}
	ins := instrumented{wasm: final, hasStart: startFunc >= 0}
	for _, f := range ci.fns {
		switch {
		case f.rec:
			ins.stats.rec++
		case f.fuel:
			ins.stats.fuel++
		default:
			ins.stats.plain++
		}
		if f.stack {
			ins.stats.stack++
		}
	}
	return ins, nil
}

// sectionOrder is the position of a section id in a module; unknown ids
// (and 0xFE, "after everything") sort last.
func sectionOrder(id byte) int {
	switch id {
	case 1, 2, 3, 4, 5:
		return int(id)
	case 13: // tag
		return 6
	case 6, 7, 8, 9:
		return int(id) + 1
	case 12: // data count
		return 11
	case 10:
		return 12
	case 11:
		return 13
	}
	return 100
}

// globalSection appends $stop = 0, $budget = budget and $fuel = callPeriod
// to a global section whose n entries are rest.
func globalSection(rest []byte, n uint32, budget int32) []byte {
	b := appendU32(nil, n+3)
	b = append(b, rest...)
	b = append(b, 0x7F, 0x01, 0x41, 0x00, 0x0B) // (mut i32) (i32.const 0)
	b = append(b, 0x7F, 0x01, 0x41)
	b = appendS33(b, int64(budget))
	b = append(b, 0x0B, 0x7F, 0x01, 0x41)
	b = appendS33(b, callPeriod)
	return append(b, 0x0B)
}

// exportSection appends the stop and budget globals and the start function
// to an export section whose n entries are rest.
func exportSection(rest []byte, n uint32, stop, budget uint32, start int) []byte {
	extra := uint32(2)
	if start >= 0 {
		extra++
	}
	b := appendU32(nil, n+extra)
	b = append(b, rest...)
	b = appendName(b, stopExport)
	b = append(b, 0x03)
	b = appendU32(b, stop)
	b = appendName(b, budgetExport)
	b = append(b, 0x03)
	b = appendU32(b, budget)
	if start >= 0 {
		b = appendName(b, startExport)
		b = append(b, 0x00)
		b = appendU32(b, uint32(start))
	}
	return b
}

type codeInfo struct {
	types       []funcType
	funcTypes   []uint32
	importFuncs int
	nFuncs      uint32 // imported and defined: the inner clones come after
	nGlobals    uint32 // the module's own globals; higher indices are ours
	nTypes      uint32 // the module's own types
	stop        uint32
	budget      uint32
	fuel        uint32
	wrapperType func(results []byte) []byte
	fns         []funcInfo // the defined functions, analysed
}

// scan decodes every function body and classifies the functions
// (callgraph.go).
func (ci *codeInfo) scan(code, elem, globals []byte, importTables bool) error {
	taken := make([]bool, len(ci.funcTypes))
	outOfRange := -1 // a function index past the module's own (see exports)
	mark := func(x uint32) {
		switch {
		case x >= ci.nFuncs:
			outOfRange = int(x)
		case int(x) >= ci.importFuncs:
			taken[int(x)-ci.importFuncs] = true
		}
	}
	r := reader{b: code}
	n := uint32(0)
	if code != nil {
		n = r.u32()
	}
	if r.err != nil || int(n) != len(ci.funcTypes) {
		return instrErr("code section has %d bodies for %d functions", n, len(ci.funcTypes))
	}
	ci.fns = make([]funcInfo, n)
	for i := range ci.fns {
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return instrErr("function %d: %v", ci.importFuncs+i, r.err)
		}
		fi, err := scanBody(body, ci, mark)
		if err != nil {
			return instrErr("function %d: %v", ci.importFuncs+i, err)
		}
		ci.fns[i] = fi
	}
	if !r.done() {
		return instrErr("code section has trailing bytes")
	}
	// Where a table's contents cannot be read, every function may be
	// called indirectly.
	if elem != nil {
		if err := elemFuncs(elem, mark); err != nil {
			return instrErr("element section: %v", err)
		}
	}
	if globals != nil {
		if err := globalFuncs(globals, mark); err != nil {
			return instrErr("global section: %v", err)
		}
	}
	if outOfRange >= 0 {
		return instrErr("function index %d out of range", outOfRange)
	}
	if importTables { // its contents cannot be read: every function may be called indirectly
		for i := range taken {
			taken[i] = true
		}
	}
	analyze(ci.fns, ci.importFuncs, taken, func(i int) int64 {
		return ci.weight(i, false)
	})
	return nil
}

// weight is the frame weight of defined function i, or of its inner clone.
func (ci *codeInfo) weight(i int, inner bool) int64 {
	f := &ci.fns[i]
	w := int64(4 + len(ci.types[ci.funcTypes[i]].params) + int(f.nLocals))
	if f.loops {
		w++ // $f
	}
	if inner {
		w += 2 // $b $fu
	}
	return w
}

// rewriteCode returns the new code section: every defined function
// rewritten (a recursive one becomes its wrapper), then the inner clones.
func rewriteCode(ci *codeInfo) ([]byte, error) {
	var inner []int
	for i := range ci.fns {
		if ci.fns[i].rec {
			inner = append(inner, i)
		}
	}
	out := appendU32(nil, uint32(len(ci.fns)+len(inner)))
	add := func(i int, body []byte, err error) error {
		if err != nil {
			return instrErr("function %d: %v", ci.importFuncs+i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
		return nil
	}
	for i := range ci.fns {
		var body []byte
		var err error
		if ci.fns[i].rec {
			body = ci.wrapperBody(i)
		} else {
			body, err = ci.rewriteFunc(i, false)
		}
		if err := add(i, body, err); err != nil {
			return nil, err
		}
	}
	for _, i := range inner {
		body, err := ci.rewriteFunc(i, true)
		if err := add(i, body, err); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// How often the module visits Go (memory.grow(0)) and tests $stop. wazero's
// native code cannot be preempted by the Go scheduler: a module that never
// leaves it would stall every stop-the-world (GC) of the executor, so the
// slow paths leave it on purpose.
//
// Loop heads count down a local $f, set to loopPeriod at function entry (a
// register: no memory traffic in the loop); entries of checked functions
// count down the fuel ($fuel, or the $fu register of threaded code) and take
// the slow path when it goes below zero. Between two slow paths run at most
// callPeriod+1 checked calls, each with at most loopPeriod loop iterations
// of its own before its own slow path, and unchecked calls of at most
// costLimit bytes of code each.
const (
	loopPeriod = 4096
	callPeriod = 1024
)

// slowPath appends the body of a fuel check's slow path:
//
//	drop(memory.grow(0))     ;; into Go: a preemption point for the scheduler
//	if $stop { unreachable } ;; the host asked the module to stop
func slowPath(b []byte, ci *codeInfo) []byte {
	b = append(b, 0x41, 0x00, 0x40, 0x00, 0x1A) // i32.const 0 memory.grow 0 drop
	b = append(b, 0x23)
	b = appendU32(b, ci.stop)
	return append(b, 0x04, 0x40, 0x00, 0x0B) // if unreachable end
}

// globalFuelEntry appends, at the entry of a non-recursive function that
// counts fuel:
//
//	$fuel = $fuel - 1
//	if $fuel < 0 { $fuel = callPeriod; slow path }
//
// Below zero, not at zero, like the inner clones (innerEntry), which hand
// their fuel over through $fuel and may leave 0 there: a test for zero
// would then not fire for 2^32 calls.
func globalFuelEntry(b []byte, ci *codeInfo) []byte {
	b = append(b, 0x23)
	b = appendU32(b, ci.fuel)
	b = append(b, 0x41, 0x01, 0x6B, 0x24) // i32.const 1 i32.sub global.set
	b = appendU32(b, ci.fuel)
	b = append(b, 0x23)
	b = appendU32(b, ci.fuel)
	b = append(b, 0x41, 0x00, 0x48, 0x04, 0x40) // i32.const 0 i32.lt_s if
	b = append(b, 0x41)
	b = appendS33(b, callPeriod)
	b = append(b, 0x24)
	b = appendU32(b, ci.fuel)
	b = slowPath(b, ci)
	return append(b, 0x0B) // end
}

// budgetCharge appends $budget = $budget - w, trapping below zero.
func budgetCharge(b []byte, ci *codeInfo, w int64) []byte {
	b = append(b, 0x23)
	b = appendU32(b, ci.budget)
	b = append(b, 0x41)
	b = appendS33(b, w)
	b = append(b, 0x6B, 0x24) // i32.sub global.set
	b = appendU32(b, ci.budget)
	b = append(b, 0x23)
	b = appendU32(b, ci.budget)
	return append(b, 0x41, 0x00, 0x48, 0x04, 0x40, 0x00, 0x0B) // i32.const 0 i32.lt_s if unreachable end
}

// budgetCredit appends $budget = $budget + w.
func budgetCredit(b []byte, ci *codeInfo, w int64) []byte {
	b = append(b, 0x23)
	b = appendU32(b, ci.budget)
	b = append(b, 0x41)
	b = appendS33(b, w)
	b = append(b, 0x6A, 0x24) // i32.add global.set
	return appendU32(b, ci.budget)
}

// innerEntry appends, at the entry of an inner clone with the budget in
// local lb and the fuel in local lfu, the test that opens its wrapper
// block; innerSlow closes it:
//
//	lb = lb - w
//	lfu = lfu - 1
//	if (lb | lfu) >= 0 (result …) ;; neither went below zero: one test
//	  the function's body
//	else
//	  if lb < 0 { $budget = -1; unreachable } ;; -1 tells the host why
//	  slow path
//	  return (call $inner params… lb callPeriod)
//	end
//
// The slow path does not rejoin the function: it calls the clone again
// with fresh fuel (a real frame, charged as one) and returns what that
// returns. wazevo (v1.12) gives a block joined by two paths the registers
// of the one laid out first, which was the slow path: the hot path paid
// moves and spills for it (RATIONALE.md, "Cheaper encodings"). As the then
// branch, the body also comes first in the code, so the hot path falls
// through.
func innerEntry(b []byte, lb, lfu uint32, w int64) []byte {
	b = append(b, 0x20)
	b = appendU32(b, lb)
	b = append(b, 0x41)
	b = appendS33(b, w)
	b = append(b, 0x6B, 0x22) // i32.sub local.tee
	b = appendU32(b, lb)
	b = append(b, 0x20)
	b = appendU32(b, lfu)
	b = append(b, 0x41, 0x01, 0x6B, 0x22) // i32.const 1 i32.sub local.tee
	b = appendU32(b, lfu)
	return append(b, 0x72, 0x41, 0x00, 0x4E) // i32.or i32.const 0 i32.ge_s
}

// innerSlow appends the else branch of inner clone i's entry test and
// closes it (innerEntry).
func (ci *codeInfo) innerSlow(b []byte, i int, lb uint32) []byte {
	b = append(b, 0x05, 0x20) // else local.get
	b = appendU32(b, lb)
	b = append(b, 0x41, 0x00, 0x48, 0x04, 0x40) // i32.const 0 i32.lt_s if
	b = append(b, 0x41, 0x7F, 0x24)             // i32.const -1 global.set
	b = appendU32(b, ci.budget)
	b = append(b, 0x00, 0x0B) // unreachable end
	b = slowPath(b, ci)
	for l := range lb + 1 { // the params, then the budget
		b = append(b, 0x20)
		b = appendU32(b, l)
	}
	b = append(b, 0x41)
	b = appendS33(b, callPeriod)
	b = append(b, 0x10)
	b = appendU32(b, ci.fns[i].inner)
	return append(b, 0x0F, 0x0B) // return end
}

// wrapperBody is the body at a recursive function's own index: it passes
// the globals to the inner clone and stores the fuel back.
//
//	(local $s i32)
//	local.get 0 … local.get p-1
//	global.get $budget  local.tee $s  i32.const w  i32.sub ;; its own frame
//	global.get $fuel
//	call $inner
//	global.set $fuel
//	local.get $s  global.set $budget ;; out-calls of the clones lowered it
func (ci *codeInfo) wrapperBody(i int) []byte {
	p := uint32(len(ci.types[ci.funcTypes[i]].params))
	b := []byte{0x01, 0x01, 0x7F} // one local: $s i32
	for l := range p {
		b = append(b, 0x20)
		b = appendU32(b, l)
	}
	b = append(b, 0x23)
	b = appendU32(b, ci.budget)
	b = append(b, 0x22)
	b = appendU32(b, p)
	b = append(b, 0x41)
	b = appendS33(b, int64(4+p+1))
	b = append(b, 0x6B, 0x23) // i32.sub global.get
	b = appendU32(b, ci.fuel)
	b = append(b, 0x10)
	b = appendU32(b, ci.fns[i].inner)
	b = append(b, 0x24)
	b = appendU32(b, ci.fuel)
	b = append(b, 0x20)
	b = appendU32(b, p)
	b = append(b, 0x24)
	b = appendU32(b, ci.budget)
	return append(b, 0x0B)
}

// rewriteFunc rewrites defined function i, or builds its inner clone
// (callgraph.go says which functions get what).
func (ci *codeInfo) rewriteFunc(i int, inner bool) ([]byte, error) {
	fi := &ci.fns[i]
	ft := ci.types[ci.funcTypes[i]]
	body := fi.body
	r := reader{b: body}
	groups := r.u32()
	groupsEnd := r.i

	p := uint32(len(ft.params))
	var shift uint32 // inner clones have two more params before the locals
	if inner {
		shift = 2
	}
	lb, lfu := p, p+1 // inner: budget and fuel
	lf := p + shift + fi.nLocals
	wrap := inner || fi.stack
	w := ci.weight(i, inner)

	out := make([]byte, 0, len(body)+len(body)/8+64)
	if fi.loops {
		out = appendU32(out, groups+1)
		out = append(out, body[groupsEnd:fi.codeStart]...)
		out = append(out, 0x01, 0x7F) // $f
	} else {
		out = append(out, body[:fi.codeStart]...)
	}
	if inner {
		out = innerEntry(out, lb, lfu, w)
	}
	if fi.fuel && !inner {
		out = globalFuelEntry(out, ci)
	}
	if fi.stack && !inner {
		out = budgetCharge(out, ci, w)
	}
	if fi.loops {
		out = append(out, 0x41)
		out = appendS33(out, loopPeriod)
		out = append(out, 0x21) // local.set
		out = appendU32(out, lf)
	}
	if wrap {
		if inner {
			out = append(out, 0x04) // if: the test innerEntry left
		} else {
			out = append(out, 0x02) // block
		}
		out = append(out, ci.wrapperType(ft.results)...)
	}
	// sync stores the clone's budget and fuel before a call that may use
	// the globals; reload reads the fuel back.
	sync := func(b []byte) []byte {
		b = append(b, 0x20)
		b = appendU32(b, lb)
		b = append(b, 0x24)
		b = appendU32(b, ci.budget)
		b = append(b, 0x20)
		b = appendU32(b, lfu)
		b = append(b, 0x24)
		return appendU32(b, ci.fuel)
	}
	reload := func(b []byte) []byte {
		b = append(b, 0x23)
		b = appendU32(b, ci.fuel)
		b = append(b, 0x21)
		return appendU32(b, lfu)
	}

	r.i = fi.codeStart
	depth := 0 // blocks open inside the function (or its wrapper block)
	// loopIf has one entry per open block: whether it is a loop whose body
	// was wrapped in an if (loopCount); inserted counts the true ones.
	// Branches crossing those ifs get their depth raised (relabel).
	var loopIf []bool
	inserted := 0
	// A branch to the function's (or wrapper's) label, past every open
	// block, crosses them all: inserted of them.
	relabel := func(d uint32) uint32 {
		nd := d
		for k := 0; k <= int(d) && k < len(loopIf); k++ {
			if loopIf[len(loopIf)-1-k] {
				nd++
			}
		}
		return nd
	}
	for !r.done() {
		start := r.i
		op := r.byte()
		switch op {
		case 0x02, 0x03, 0x04: // block loop if
			r.blockType(ci.nTypes)
			depth++
			out = append(out, body[start:r.i]...)
			loopIf = append(loopIf, op == 0x03)
			if op == 0x03 {
				inserted++
				out = loopCount(out, lf)
				out = append(out, 0x04) // if, with the loop's block type
				out = append(out, body[start+1:r.i]...)
			}
			continue
		case 0x0B: // end
			if depth == 0 {
				if inner {
					out = ci.innerSlow(out, i, lb)
				} else if wrap {
					out = append(out, 0x0B) // end of the wrapper block
				}
				if fi.stack && !inner {
					out = budgetCredit(out, ci, w)
				}
				if inner {
					out = append(out, 0x20) // local.get $fu: the extra result
					out = appendU32(out, lfu)
				}
				return append(out, 0x0B), nil // end of the function
			}
			depth--
			if loopIf[len(loopIf)-1] {
				inserted--
				out = loopSlow(out, ci, lf)
			}
			loopIf = loopIf[:len(loopIf)-1]
		case 0x0C, 0x0D: // br br_if
			d := r.u32()
			out = append(out, op)
			out = appendU32(out, relabel(d))
			continue
		case 0x0E: // br_table
			n := r.u32()
			out = append(out, op)
			out = appendU32(out, n)
			for j := uint32(0); j <= n && r.err == nil; j++ {
				out = appendU32(out, relabel(r.u32()))
			}
			if r.err != nil {
				return nil, r.err
			}
			continue
		case 0x0F: // return
			if wrap { // → br to the wrapper block
				out = append(out, 0x0C)
				out = appendU32(out, uint32(depth+inserted))
				continue
			}
		case 0x10: // call
			x := r.u32()
			if !inner || int(x) < ci.importFuncs {
				break
			}
			switch g := &ci.fns[int(x)-ci.importFuncs]; {
			case g.rec: // threaded: call the clone
				out = append(out, 0x20)
				out = appendU32(out, lb)
				out = append(out, 0x20)
				out = appendU32(out, lfu)
				out = append(out, 0x10)
				out = appendU32(out, g.inner)
				out = append(out, 0x21)
				out = appendU32(out, lfu)
				continue
			case g.touches:
				out = sync(out)
				out = append(out, body[start:r.i]...)
				out = reload(out)
				continue
			}
		case 0x11: // call_indirect
			r.u32()
			r.u32()
			if inner {
				out = sync(out)
				out = append(out, body[start:r.i]...)
				out = reload(out)
				continue
			}
		case 0x20, 0x21, 0x22: // local.get local.set local.tee
			l := r.u32()
			if inner && l >= p {
				out = append(out, op)
				out = appendU32(out, l+shift)
				continue
			}
		default:
			if err := r.skipImmediates(op); err != nil {
				return nil, err
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		out = append(out, body[start:r.i]...)
	}
	if r.err != nil {
		return nil, r.err
	}
	return nil, errors.New("function body does not end")
}

// skipImmediates reads the immediates of op (already read).
func (r *reader) skipImmediates(op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0F || op == 0x1A || op == 0x1B:
	case op == 0x0C || op == 0x0D: // br br_if
		r.u32()
	case op == 0x0E: // br_table
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.u32()
		}
		r.u32()
	case op == 0x10: // call
		r.u32()
	case op == 0x1C: // select t*
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.valtype()
		}
	case op >= 0x20 && op <= 0x24: // local.* global.get global.set
		r.u32()
	case op == 0x25 || op == 0x26: // table.get table.set
		r.u32()
	case op >= 0x28 && op <= 0x3E: // loads and stores
		r.memarg()
	case op == 0x3F || op == 0x40: // memory.size memory.grow
		r.memIndex()
	case op == 0x41:
		r.sleb(32)
	case op == 0x42:
		r.sleb(64)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op >= 0x45 && op <= 0xC4: // numeric, sign extension
	case op == 0xD0: // ref.null t
		r.valtype()
	case op == 0xD1:
	case op == 0xD2: // ref.func
		r.u32()
	case op == 0xFC:
		return r.skipFC()
	case op == 0xFD:
		return r.skipFD()
	default:
		return fmt.Errorf("opcode 0x%02x is not supported", op)
	}
	return r.err
}

func (r *reader) skipFC() error {
	switch sub := r.u32(); {
	case sub <= 7: // trunc_sat
	case sub == 8: // memory.init
		r.u32()
		r.memIndex()
	case sub == 9: // data.drop
		r.u32()
	case sub == 10: // memory.copy
		r.memIndex()
		r.memIndex()
	case sub == 11: // memory.fill
		r.memIndex()
	case sub == 12, sub == 14: // table.init, table.copy
		r.u32()
		r.u32()
	case sub == 13, sub == 15, sub == 16, sub == 17: // elem.drop, table.grow/size/fill
		r.u32()
	default:
		return fmt.Errorf("opcode 0xfc %d is not supported", sub)
	}
	return r.err
}

func (r *reader) skipFD() error {
	switch sub := r.u32(); {
	case sub <= 11: // v128 loads and store
		r.memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		r.byte()
	case sub >= 84 && sub <= 91: // load/store lane
		r.memarg()
		r.byte()
	case sub == 92 || sub == 93: // load zero
		r.memarg()
	case sub <= 255 && simdNoImmediate(sub):
	default:
		return fmt.Errorf("opcode 0xfd %d is not supported", sub)
	}
	return r.err
}

// simdNoImmediate reports whether SIMD opcode sub (other than the ones with
// immediates) exists in the fixed-width SIMD proposal.
func simdNoImmediate(sub uint32) bool {
	switch {
	case sub >= 14 && sub <= 20, // swizzle, splats
		sub >= 35 && sub <= 83, // comparisons, v128 bitwise, f32x4/f64x2 demote/promote
		sub >= 94 && sub <= 255:
		// 94..255: arithmetic; a few are unassigned (e.g. 0x9a, 0xa2, 0xa5,
		// 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4, 0xbb, 0xc2, 0xc5, 0xc6, 0xcf,
		// 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee): wazero refuses them when it
		// compiles, and none has immediates, so decoding them here is safe.
		return true
	}
	return false
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b   []byte
	i   int
	err error
}

var errEOF = errors.New("unexpected end")

func (r *reader) done() bool { return r.err != nil || r.i >= len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.i >= len(r.b) {
		r.err = errEOF
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.i {
		r.err = errEOF
		return nil
	}
	b := r.b[r.i : r.i+n]
	r.i += n
	return b
}

func (r *reader) u32() uint32 {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7F) << shift
		if c&0x80 == 0 {
			if v > 0xFFFFFFFF {
				r.err = errors.New("u32 overflow")
				return 0
			}
			return uint32(v)
		}
	}
	r.err = errors.New("u32 too long")
	return 0
}

// sleb reads a signed LEB128 of at most bits bits.
func (r *reader) sleb(bits int) int64 {
	var v int64
	shift := 0
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7F) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
		if shift >= bits {
			r.err = errors.New("signed LEB too long")
			return 0
		}
	}
}

func (r *reader) name() string {
	n := r.u32()
	return string(r.bytes(int(n)))
}

func (r *reader) valtype() byte {
	switch t := r.byte(); t {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return t
	default:
		if r.err == nil {
			r.err = fmt.Errorf("value type 0x%02x is not supported", t)
		}
		return 0
	}
}

func (r *reader) valtypes() []byte {
	n := r.u32()
	if r.err != nil || int(n) > len(r.b)-r.i {
		if r.err == nil {
			r.err = errEOF
		}
		return nil
	}
	ts := make([]byte, n)
	for i := range ts {
		ts[i] = r.valtype()
	}
	return ts
}

func (r *reader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
	if flags > 3 { // 2: shared (threads), 3: shared with max
		r.err = fmt.Errorf("limits flags 0x%02x are not supported", flags)
	}
}

// memarg reads align and offset; a memory index (multi-memory) is refused.
func (r *reader) memarg() {
	if align := r.u32(); align >= 1<<6 {
		r.err = errors.New("memory index in memarg (multi-memory) is not supported")
	}
	r.u32()
}

// memIndex reads the reserved zero byte of memory instructions.
func (r *reader) memIndex() {
	if r.byte() != 0 && r.err == nil {
		r.err = errors.New("memory index other than 0 is not supported")
	}
}

func (r *reader) blockType(nTypes uint32) {
	if r.i < len(r.b) {
		switch r.b[r.i] {
		case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
			r.i++
			return
		}
	}
	idx := r.sleb(33)
	if r.err == nil && (idx < 0 || idx >= int64(nTypes)) {
		r.err = fmt.Errorf("block type index %d out of range", idx)
	}
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendS33(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

// checkCounts refuses a section whose vectors declare more entries than
// its bytes could hold. wazero's decoder (v1.12.0, internal/wasm/binary)
// allocates by the declared count before reading the entries: a 15-byte
// module whose element section claims 2^32-1 segments makes it ask for
// hundreds of GiB, which kills the process ("fatal error: runtime: out of
// memory"); instrument runs before every compilation, so this is where it
// is stopped. Every entry takes one byte at least.
func checkCounts(s rawSection) error {
	switch s.id {
	case secType, secImport, secFunction, 4 /* table */, secMemory, secGlobal, secExport, secElem, secCode, secData, secTag:
	default:
		return nil
	}
	r := reader{b: s.body}
	n := r.u32()
	if r.err != nil {
		return instrErr("section %d: %v", s.id, r.err)
	}
	if int64(n) > int64(len(r.b)-r.i) {
		return instrErr("section %d declares %d entries in %d bytes", s.id, n, len(r.b)-r.i)
	}
	if s.id != secData {
		return nil
	}
	// data segments: each one's bytes are allocated by their declared length
	for range n {
		switch flags := r.u32(); flags {
		case 0:
			r.constExprFuncs(func(uint32) {})
		case 1:
		case 2:
			r.u32()
			r.constExprFuncs(func(uint32) {})
		default:
			return instrErr("data segment flags %d", flags)
		}
		size := r.u32()
		r.bytes(int(size))
		if r.err != nil {
			return instrErr("data section: %v", r.err)
		}
	}
	return nil
}

// nameSectionOK reports whether the name section's maps declare no more
// entries than their bytes could hold (wazero sizes maps by them).
func nameSectionOK(b []byte) bool {
	r := reader{b: b}
	for !r.done() {
		id := r.byte()
		sub := reader{b: r.bytes(int(r.u32()))}
		if r.err != nil {
			return false
		}
		if id != 1 && id != 2 {
			continue
		}
		n := sub.u32()
		for i := uint32(0); i < n && sub.err == nil; i++ {
			if int64(n-i) > int64(len(sub.b)-sub.i) {
				return false
			}
			sub.u32()
			if id == 1 {
				sub.name()
				continue
			}
			m := sub.u32()
			if int64(m) > int64(len(sub.b)-sub.i) {
				return false
			}
			for j := uint32(0); j < m && sub.err == nil; j++ {
				sub.u32()
				sub.name()
			}
		}
		if sub.err != nil {
			return false
		}
	}
	return r.err == nil
}

// loopCount appends, at a loop head, the test that opens the if wrapping
// the loop's body; loopSlow closes it before the loop's end:
//
//	loop (type)
//	  l = l - 1
//	  if (type) l != 0
//	    the loop's body
//	  else
//	    l = loopPeriod
//	    slow path
//	    br 1 ;; back to the loop head, with the loop's params
//	  end
//	end
//
// The slow path never rejoins the body: it branches back to the loop head.
// With the test as `if l == 0 { l = loopPeriod; slow path }` before the
// body, wazevo (v1.12) started the body from the registers of the slow path
// (its memory.grow is a call that clobbers them all), like the recursive
// clones' entry did (innerEntry): small loops in small functions paid
// spills and reloads every iteration (RATIONALE.md, "Cheaper encodings").
func loopCount(b []byte, l uint32) []byte {
	b = append(b, 0x20) // local.get
	b = appendU32(b, l)
	b = append(b, 0x41, 0x01, 0x6B, 0x22) // i32.const 1 i32.sub local.tee
	return appendU32(b, l)
}

// loopSlow appends the else branch of a loop head's test (loopCount) and
// closes it.
func loopSlow(b []byte, ci *codeInfo, l uint32) []byte {
	b = append(b, 0x05, 0x41) // else i32.const
	b = appendS33(b, loopPeriod)
	b = append(b, 0x21) // local.set
	b = appendU32(b, l)
	b = slowPath(b, ci)
	return append(b, 0x0C, 0x01, 0x0B) // br 1 end
}
