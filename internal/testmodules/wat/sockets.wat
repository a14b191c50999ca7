;; A command that tries every WASI socket call on fds 0-63 (stdio, and fds
;; it was never given). Every call must fail; if one succeeds the module
;; traps. Prints "no sockets\n" and exits 0.
(module
  (import "wasi_snapshot_preview1" "sock_accept" (func $accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func $recv (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_shutdown" (func $shutdown (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0: buf 64, len 8; message at 64
  (data (i32.const 0) "\40\00\00\00\08\00\00\00")
  (data (i32.const 64) "payload!")
  (data (i32.const 128) "no sockets\n")
  (func (export "_start") (local $fd i32)
    (loop $l
      (if (i32.eqz (call $accept (local.get $fd) (i32.const 0) (i32.const 200))) (then unreachable))
      (if (i32.eqz (call $recv (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 204) (i32.const 208))) (then unreachable))
      (if (i32.eqz (call $send (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 212))) (then unreachable))
      (if (i32.eqz (call $shutdown (local.get $fd) (i32.const 2))) (then unreachable))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $fd) (i32.const 64))))
    (i32.store (i32.const 0) (i32.const 128))
    (i32.store (i32.const 4) (i32.const 11))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 216)))))
