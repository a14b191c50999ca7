package sandbox

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Which functions pay for the time limit and the stack bound, and how
// (runtime/RATIONALE.md, "Only what can recurse pays").
//
// The call graph has an edge f → g for every `call g` in f (calls to
// imported functions have none: WASI and atf_v1 functions never call back
// into the guest) and f → T for every call_indirect in f, where T is a
// virtual node with an edge to every address-taken function: one in an
// element segment, named by a ref.func anywhere, or any function at all
// when the module imports a table. A function in a cycle of that graph
// (a strongly connected component of more than one node, or with an edge
// to itself) can recur without bound; every other one appears at most once
// on the call stack and its calls form a DAG.
//
//   - recursive functions are threaded: each gets an inner clone taking the
//     remaining stack budget and the fuel as two extra i32 parameters and
//     returning the fuel as an extra result, so a recursive call moves two
//     registers instead of loading and storing globals. The original index
//     becomes a wrapper that reads $budget and $fuel, calls the clone and
//     stores the fuel back (it is what exports, tables and non-recursive
//     callers call).
//   - a non-recursive function with a loop, or address-taken (a
//     call_indirect site does not know its cost), or too costly (below)
//     counts the global $fuel at entry (fuel);
//   - a non-recursive function charges the global $budget (stack) only when
//     the deepest chain of uncharged frames through it would exceed
//     unaccountedLimit weight units;
//   - every other function is left as it is.
//
// Time: a function without a loop, without recursion and without fuel runs
// at most cost bytes of code (its body plus the cost of the unchecked
// functions it calls; forward branches only) before it returns or reaches
// a checked callee. When a function's cost would exceed costLimit, its most
// costly unchecked callees are made to count fuel until it does not (a DAG
// of functions each calling the next twice would otherwise run 2^depth
// calls without a check); one whose own body is that large counts fuel
// itself.
//
// Stack: frames of recursive functions and of wrappers are charged to the
// budget; the uncharged ones on the stack at any time lie on one path of
// the DAG of components, so their weight is at most unaccountedLimit.

const (
	// costLimit bounds the bytes of code a call of an unchecked function
	// runs (about as many instructions: ~1-5 µs).
	costLimit = 4096
	// unaccountedLimit bounds the frame weight of uncharged frames on the
	// stack: 64 Ki units, ~1 MiB of wazero stack at stackUnitBytes.
	unaccountedLimit = 1 << 16
)

// funcInfo is what instrument learns about one function defined by the
// module (index importFuncs+i in the function index space).
type funcInfo struct {
	body      []byte
	codeStart int      // offset in body of the first instruction
	nLocals   uint32   // declared locals (not params)
	calls     []uint32 // direct callees (function index space), one per call site
	indirect  bool     // has a call_indirect
	loops     bool     // has a loop

	rec     bool   // in a cycle: threaded through an inner clone
	fuel    bool   // not rec: counts $fuel at entry
	stack   bool   // not rec: charges $budget
	touches bool   // it or something it may call reads or writes $fuel or $budget
	cost    int64  // unchecked (not rec, not fuel): bytes of code a call runs at most
	inner   uint32 // rec: function index of the inner clone
}

// checked reports whether entering f counts fuel.
func (f *funcInfo) checked() bool { return f.rec || f.fuel }

// scanBody decodes a function body once, validating what rewriteFunc
// relies on, and records its calls and loops; ref.func operands are passed
// to addrTaken.
func scanBody(body []byte, ci *codeInfo, addrTaken func(uint32)) (funcInfo, error) {
	fi := funcInfo{body: body}
	r := reader{b: body}
	var nLocals uint64
	groups := r.u32()
	for i := uint32(0); i < groups && r.err == nil; i++ {
		nLocals += uint64(r.u32())
		r.byte()
	}
	if r.err != nil {
		return fi, r.err
	}
	if nLocals > 50000 {
		return fi, fmt.Errorf("%d locals, more than 50000", nLocals)
	}
	fi.nLocals, fi.codeStart = uint32(nLocals), r.i
	depth := 0
	for !r.done() {
		switch op := r.byte(); op {
		case 0x02, 0x03, 0x04: // block loop if
			r.blockType(ci.nTypes)
			depth++
			if op == 0x03 {
				fi.loops = true
			}
		case 0x0B: // end
			if depth == 0 {
				if !r.done() {
					return fi, errors.New("code after the function's end")
				}
				return fi, nil
			}
			depth--
		case 0x10: // call
			x := r.u32()
			if r.err == nil && x >= ci.nFuncs {
				return fi, fmt.Errorf("function index %d out of range", x)
			}
			fi.calls = append(fi.calls, x)
		case 0x11: // call_indirect typeidx tableidx
			if idx := r.u32(); idx >= ci.nTypes {
				return fi, fmt.Errorf("type index %d out of range", idx)
			}
			r.u32()
			fi.indirect = true
		case 0x23, 0x24: // global.get global.set
			if idx := r.u32(); idx >= ci.nGlobals {
				return fi, fmt.Errorf("global index %d out of range", idx)
			}
		case 0xD2: // ref.func
			x := r.u32()
			if r.err == nil && x >= ci.nFuncs {
				return fi, fmt.Errorf("function index %d out of range", x)
			}
			addrTaken(x)
		default:
			if err := r.skipImmediates(op); err != nil {
				return fi, err
			}
		}
		if r.err != nil {
			return fi, r.err
		}
	}
	if r.err != nil {
		return fi, r.err
	}
	return fi, errors.New("function body does not end")
}

// constExprFuncs reads a constant expression up to its end, passing
// ref.func operands to addrTaken.
func (r *reader) constExprFuncs(addrTaken func(uint32)) {
	for r.err == nil {
		op := r.byte()
		switch op {
		case 0x0B:
			return
		case 0xD2:
			addrTaken(r.u32())
		default:
			if err := r.skipImmediates(op); err != nil && r.err == nil {
				r.err = err
			}
		}
	}
}

// elemFuncs passes every function an element section names to addrTaken.
func elemFuncs(body []byte, addrTaken func(uint32)) error {
	r := reader{b: body}
	n := r.u32()
	for range n {
		flags := r.u32()
		funcIdxs := func() {
			n := r.u32()
			if int64(n) > int64(len(r.b)-r.i) {
				r.err = errEOF
				return
			}
			for range n {
				addrTaken(r.u32())
				if r.err != nil {
					return
				}
			}
		}
		exprs := func() {
			n := r.u32()
			if int64(n) > int64(len(r.b)-r.i) {
				r.err = errEOF
				return
			}
			for range n {
				r.constExprFuncs(addrTaken)
				if r.err != nil {
					return
				}
			}
		}
		switch flags {
		case 0:
			r.constExprFuncs(addrTaken)
			funcIdxs()
		case 1, 3:
			r.byte() // elemkind
			funcIdxs()
		case 2:
			r.u32() // table
			r.constExprFuncs(addrTaken)
			r.byte()
			funcIdxs()
		case 4:
			r.constExprFuncs(addrTaken)
			exprs()
		case 5, 7:
			r.valtype()
			exprs()
		case 6:
			r.u32()
			r.constExprFuncs(addrTaken)
			r.valtype()
			exprs()
		default:
			return fmt.Errorf("element segment flags %d", flags)
		}
		if r.err != nil {
			return r.err
		}
	}
	return r.err
}

// globalFuncs passes every function a global initializer names to addrTaken.
func globalFuncs(body []byte, addrTaken func(uint32)) error {
	r := reader{b: body}
	for range r.u32() {
		r.valtype()
		r.byte()
		r.constExprFuncs(addrTaken)
		if r.err != nil {
			return r.err
		}
	}
	return r.err
}

// analyze classifies fns (see the top of this file). taken[i] reports
// whether defined function i is address-taken; weight(i) is its frame
// weight.
func analyze(fns []funcInfo, importFuncs int, taken []bool, weight func(i int) int64) {
	n := len(fns)
	t := int32(n) // the virtual call_indirect node
	adj := make([][]int32, n+1)
	for i := range fns {
		for _, c := range fns[i].calls {
			if int(c) >= importFuncs {
				adj[i] = append(adj[i], int32(int(c)-importFuncs))
			}
		}
		if fns[i].indirect {
			adj[i] = append(adj[i], t)
		}
		if taken[i] {
			adj[t] = append(adj[t], int32(i))
		}
	}
	comps := tarjan(adj)
	compOf := make([]int32, n+1)
	for c, comp := range comps {
		for _, v := range comp {
			compOf[v] = int32(c)
		}
	}
	for _, comp := range comps {
		rec := len(comp) > 1 || slices.Contains(adj[comp[0]], comp[0])
		for _, v := range comp {
			if v != t {
				fns[v].rec = rec
			}
		}
	}
	for i := range fns {
		f := &fns[i]
		if !f.rec && (f.loops || taken[i]) {
			f.fuel = true
		}
	}

	// Cost, callees first (tarjan returns components in reverse
	// topological order).
	type site struct {
		callee int
		count  int64
	}
	var sites []site
	at := map[int]int{} // callee -> position in sites
	for _, comp := range comps {
		for _, v := range comp {
			if v == t {
				continue
			}
			f := &fns[v]
			sites = sites[:0]
			clear(at)
			for _, c := range f.calls {
				g := int(c) - importFuncs
				if g < 0 || fns[g].checked() {
					continue
				}
				if k, ok := at[g]; ok {
					sites[k].count++
				} else {
					at[g] = len(sites)
					sites = append(sites, site{g, 1})
				}
			}
			cost := int64(len(f.body))
			for _, s := range sites {
				cost += s.count * fns[s.callee].cost
			}
			if cost > costLimit {
				slices.SortFunc(sites, func(a, b site) int {
					return cmp.Compare(b.count*fns[b.callee].cost, a.count*fns[a.callee].cost)
				})
				for _, s := range sites {
					if cost <= costLimit {
						break
					}
					cost -= s.count * fns[s.callee].cost
					fns[s.callee].fuel = true
				}
			}
			f.cost = cost
			if !f.rec && cost > costLimit {
				f.fuel = true
			}
		}
	}

	// Uncharged stack weight and touches, callees first.
	unacc := make([]int64, n+1)
	touches := make([]bool, n+1)
	touches[t] = true // every address-taken function is rec or fuel
	for c, comp := range comps {
		var m int64
		tc := false
		for _, v := range comp {
			for _, w := range adj[v] {
				if compOf[w] != int32(c) {
					m = max(m, unacc[w])
					tc = tc || touches[w]
				}
			}
		}
		if len(comp) == 1 && comp[0] != t && !fns[comp[0]].rec {
			v := comp[0]
			f := &fns[v]
			if w := weight(int(v)); w+m > unaccountedLimit {
				f.stack = true
				unacc[v] = m
			} else {
				unacc[v] = w + m
			}
			f.touches = tc || f.fuel || f.stack || f.indirect
			touches[v] = f.touches
			continue
		}
		for _, v := range comp {
			unacc[v] = m
			touches[v] = true
			if v != t {
				fns[v].touches = true
			}
		}
	}
}

// tarjan returns the strongly connected components of the graph adj, each
// after every component it has an edge to (reverse topological order).
// Iterative: a module may have a call chain of any length.
func tarjan(adj [][]int32) [][]int32 {
	n := len(adj)
	index := make([]int32, n) // 0: not visited yet
	low := make([]int32, n)
	onStack := make([]bool, n)
	var (
		stack []int32
		comps [][]int32
		next  int32 = 1
	)
	type frame struct{ v, i int32 }
	var calls []frame
	visit := func(v int32) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		calls = append(calls, frame{v, 0})
	}
	for s := range n {
		if index[s] != 0 {
			continue
		}
		visit(int32(s))
		for len(calls) > 0 {
			top := &calls[len(calls)-1]
			v := top.v
			if int(top.i) < len(adj[v]) {
				w := adj[v][top.i]
				top.i++
				if index[w] == 0 {
					visit(w)
				} else if onStack[w] {
					low[v] = min(low[v], index[w])
				}
				continue
			}
			calls = calls[:len(calls)-1]
			if len(calls) > 0 {
				p := calls[len(calls)-1].v
				low[p] = min(low[p], low[v])
			}
			if low[v] == index[v] {
				var comp []int32
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[w] = false
					comp = append(comp, w)
					if w == v {
						break
					}
				}
				comps = append(comps, comp)
			}
		}
	}
	return comps
}
