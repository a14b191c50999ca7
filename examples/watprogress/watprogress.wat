;; watprogress — an atf lambda in hand-written WebAssembly text, using
;; atf_v1 directly (sdk/guest/ABI.md): it opens a span, logs, reports
;; progress 50 and 100, stops early (exit 0, output "cancelled\n") if a
;; progress call answers "cancel requested", and writes "done\n".
;;
;;   wat2wasm examples/watprogress/watprogress.wat -o examples/watprogress/watprogress.wasm
(module
  (import "atf_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "atf_v1" "progress" (func $progress (param i32) (result i32)))
  (import "atf_v1" "span_start" (func $span_start (param i32 i32 i32) (result i32)))
  (import "atf_v1" "span_set_attribute" (func $span_set_attribute (param i32 i32 i32 i32 i32) (result i32)))
  (import "atf_v1" "span_end" (func $span_end (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; strings
  (data (i32.const 0) "step")           ;; 0, 4
  (data (i32.const 16) "hello from wat") ;; 16, 14
  (data (i32.const 32) "wat.step")      ;; 32, 8
  (data (i32.const 48) "half")          ;; 48, 4
  (data (i32.const 64) "done\n")        ;; 64, 5
  (data (i32.const 80) "cancelled\n")   ;; 80, 10
  ;; iovec at 128, nwritten at 136

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 128) (local.get $ptr))
    (i32.store (i32.const 132) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 136))))

  (func (export "_start")
    (local $span i32)
    ;; span "step", a child of the task's execute span (parent 0)
    (local.set $span (call $span_start (i32.const 0) (i32.const 0) (i32.const 4)))
    (drop (call $span_set_attribute (local.get $span) (i32.const 32) (i32.const 8) (i32.const 48) (i32.const 4)))
    ;; log at level 1 (info)
    (drop (call $log (i32.const 1) (i32.const 16) (i32.const 14)))
    (if (i32.eq (call $progress (i32.const 50)) (i32.const 1))
      (then
        (call $write (i32.const 80) (i32.const 10))
        (drop (call $span_end (local.get $span) (i32.const 0) (i32.const 0) (i32.const 0)))
        (return)))
    (drop (call $span_end (local.get $span) (i32.const 0) (i32.const 0) (i32.const 0)))
    (drop (call $progress (i32.const 100)))
    (call $write (i32.const 64) (i32.const 5))))
