package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// Import modules a lambda may use.
const (
	wasiModule = "wasi_snapshot_preview1"
	atfModule  = "atf_v1"
)

// Info describes an accepted module.
type Info struct {
	// SHA256 is the lowercase hex SHA-256 of the module bytes.
	SHA256 string
	// ABI is ABI_COMMAND for a WASI command (exports _start) and
	// ABI_REACTOR for a reactor (exports _initialize and a handler, no
	// _start).
	ABI atfv1.Abi
	// Imports lists the imported functions and memories as "module.name",
	// sorted, without duplicates.
	Imports []string
}

// InvalidModuleError is why Inspect refused a module, in words a person
// can act on.
type InvalidModuleError struct{ Reason string }

func (e *InvalidModuleError) Error() string { return e.Reason }

func invalid(format string, args ...any) error {
	return &InvalidModuleError{Reason: fmt.Sprintf(format, args...)}
}

var wasmMagic = []byte("\x00asm")

func checkMagic(wasm []byte) error {
	if !bytes.HasPrefix(wasm, wasmMagic) {
		return invalid(`not a WebAssembly module: the upload does not start with the \0asm magic number; upload the .wasm file your compiler produced`)
	}
	return nil
}

// Inspect compiles wasm and checks it is acceptable; with
// Config.KeepInspected it keeps the compiled module for Run.
// Errors are *InvalidModuleError, except when the Engine is closed.
func (e *Engine) Inspect(ctx context.Context, wasm []byte) (Info, error) {
	if err := checkMagic(wasm); err != nil {
		return Info{}, err
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return Info{}, errClosed
	}
	mod, err := e.compile(ctx, wasm)
	if errors.Is(err, errInstrument) {
		return Info{}, invalid("module cannot be run by atf: %v", oneLine(err.Error()))
	}
	if err != nil {
		return Info{}, invalid("not a valid WebAssembly module: %v", oneLine(err.Error()))
	}
	keep := false
	defer func() {
		if !keep {
			mod.Close(ctx)
		}
	}()

	imports, err := e.checkImports(mod)
	if err != nil {
		return Info{}, err
	}
	abi, err := moduleABI(mod)
	if err != nil {
		return Info{}, err
	}
	sum := sha256.Sum256(wasm)
	info := Info{SHA256: hex.EncodeToString(sum[:]), ABI: abi, Imports: imports}
	if e.cfg.KeepInspected {
		keep = e.keepCompiled(info.SHA256, mod, compiledSize(wasm))
	}
	return info, nil
}

// checkImports returns the module's imports and refuses, naming every one,
// imports from modules atf does not offer and WASI functions that do not
// exist or have the wrong signature.
//
// wazero's CompiledModule exposes imported functions and memories; a table
// or global import is refused when a task instantiates the module.
func (e *Engine) checkImports(mod wazero.CompiledModule) ([]string, error) {
	var all, foreign, badWASI, badATF []string
	for _, f := range mod.ImportedFunctions() {
		m, n, _ := f.Import()
		name := m + "." + n
		all = append(all, name)
		switch m {
		case wasiModule:
			if !e.wasiHas(f) {
				badWASI = append(badWASI, name)
			}
		case atfModule:
			if e.atf != nil && !has(e.atf, f) {
				badATF = append(badATF, name)
			}
		default:
			foreign = append(foreign, name)
		}
	}
	for _, mem := range mod.ImportedMemories() {
		m, n, _ := mem.Import()
		name := m + "." + n
		all = append(all, name)
		// Neither WASI nor atf_v1 offers a memory: the module must own it.
		foreign = append(foreign, name)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	slices.Sort(foreign)
	foreign = slices.Compact(foreign)
	slices.Sort(badWASI)
	badWASI = slices.Compact(badWASI)
	slices.Sort(badATF)
	badATF = slices.Compact(badATF)

	var reasons []string
	if len(foreign) > 0 {
		reasons = append(reasons, fmt.Sprintf("module imports %s, which atf does not offer: a lambda may import only from %s and %s",
			nameList(foreign), wasiModule, atfModule))
	}
	if len(badWASI) > 0 {
		reasons = append(reasons, fmt.Sprintf("module imports %s, which WASI preview 1 does not define with that signature: build for wasip1 (GOOS=wasip1, or clang --target=wasm32-wasi)",
			nameList(badWASI)))
	}
	if len(badATF) > 0 {
		reasons = append(reasons, fmt.Sprintf("module imports %s, which %s does not define with that signature: build against the guest SDK of this atf version (sdk/guest/ABI.md)",
			nameList(badATF), atfModule))
	}
	if len(reasons) > 0 {
		return nil, &InvalidModuleError{Reason: strings.Join(reasons, "; ")}
	}
	return all, nil
}

func (e *Engine) wasiHas(f api.FunctionDefinition) bool { return has(e.wasi, f) }

// has reports whether host exports f's import name with f's signature.
func has(host map[string]api.FunctionDefinition, f api.FunctionDefinition) bool {
	_, n, _ := f.Import()
	def, ok := host[n]
	return ok && slices.Equal(def.ParamTypes(), f.ParamTypes()) && slices.Equal(def.ResultTypes(), f.ResultTypes())
}

// nameList renders names as "a", "a and b" or "a, b and c".
func nameList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// moduleABI tells a command from a reactor (doc.go, "Reactor ABI (v1)").
func moduleABI(mod wazero.CompiledModule) (atfv1.Abi, error) {
	exports := mod.ExportedFunctions()
	if _, ok := exports["_start"]; ok {
		return atfv1.Abi_ABI_COMMAND, nil
	}
	i32 := []api.ValueType{api.ValueTypeI32}
	if init, ok := exports[initializeExport]; ok {
		h, ok := exports[handleExport]
		switch {
		case !ok:
			return atfv1.Abi_ABI_UNSPECIFIED, invalid("module exports _initialize but not atf_handle: a reactor must export atf_handle(payload_len i32) -> i32 (sdk/guest/ABI.md); or build a command (no -buildmode=c-shared, or clang without -mexec-model=reactor)")
		case !slices.Equal(h.ParamTypes(), i32) || !slices.Equal(h.ResultTypes(), i32):
			return atfv1.Abi_ABI_UNSPECIFIED, invalid("module exports atf_handle%s; a reactor's must be atf_handle(payload_len i32) -> i32 (sdk/guest/ABI.md)", signature(h))
		case len(init.ParamTypes()) != 0 || len(init.ResultTypes()) != 0:
			return atfv1.Abi_ABI_UNSPECIFIED, invalid("module exports _initialize%s; it must take and return nothing", signature(init))
		}
		return atfv1.Abi_ABI_REACTOR, nil
	}
	return atfv1.Abi_ABI_UNSPECIFIED, invalid("module exports neither _start (a WASI command) nor _initialize and atf_handle (a reactor): build with GOOS=wasip1 (add -buildmode=c-shared for a reactor), or clang --target=wasm32-wasi")
}

// signature renders f's type as "(i32, i64) -> (i32)".
func signature(f api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(f.ParamTypes()) + " -> " + names(f.ResultTypes())
}

// oneLine returns the first line of s.
func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
