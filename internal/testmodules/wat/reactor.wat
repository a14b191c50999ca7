;; A reactor (runtime/sandbox/doc.go, "Reactor ABI (v1)") whose handler does
;; what the payload's first byte says, for the sandbox's reactor tests:
;;
;;   e…  echo the payload, then one digit: the calls this instance served
;;   i   one digit: how many times _initialize ran
;;   s<b> write "failing" to stderr, return status b (the byte's value)
;;   t   trap (unreachable)
;;   l   loop forever
;;   r   recurse forever (stack limit)
;;   m   grow memory by 2000 pages (125 MiB); refused: return 1
;;   M   the same, but a refusal returns 0 (the guest copes)
;;   x<b> proc_exit(b)
;;   o   write to stdout forever
;;
;; An empty payload returns 0 and writes nothing. The payload (up to 60000
;; bytes) is read from stdin at 1024; a length other than payload_len
;; returns status 99.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "failing\n")
  (global $inits (mut i32) (i32.const 0))
  (global $calls (mut i32) (i32.const 0))

  (func (export "_initialize")
    (global.set $inits (i32.add (global.get $inits) (i32.const 1))))

  ;; read_all reads stdin to 1024.. until EOF and returns the length.
  (func $read_all (result i32)
    (local $n i32)
    (block $done
      (loop $more
        (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $n)))
        (i32.store (i32.const 4) (i32.sub (i32.const 60000) (local.get $n)))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br_if $done (i32.eqz (i32.load (i32.const 8))))
        (local.set $n (i32.add (local.get $n) (i32.load (i32.const 8))))
        (br $more)))
    (local.get $n))

  ;; write writes [ptr, ptr+len) to fd and returns the errno.
  (func $write (param $fd i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 16) (i32.const 1) (i32.const 24)))

  (func $recurse (param $x i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $x) (i32.const 1))) (i32.const 1)))

  (func (export "atf_handle") (param $len i32) (result i32)
    (local $n i32)
    (local $op i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (local.set $n (call $read_all))
    (if (i32.ne (local.get $n) (local.get $len)) (then (return (i32.const 99))))
    (if (i32.eqz (local.get $n)) (then (return (i32.const 0))))
    (local.set $op (i32.load8_u (i32.const 1024)))

    (if (i32.eq (local.get $op) (i32.const 101)) (then ;; e
      (i32.store8 (i32.add (i32.const 1024) (local.get $n)) (i32.add (i32.const 48) (global.get $calls)))
      (drop (call $write (i32.const 1) (i32.const 1024) (i32.add (local.get $n) (i32.const 1))))
      (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 105)) (then ;; i
      (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (global.get $inits)))
      (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 1)))
      (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 115)) (then ;; s
      (drop (call $write (i32.const 2) (i32.const 64) (i32.const 8)))
      (return (i32.load8_u (i32.const 1025)))))
    (if (i32.eq (local.get $op) (i32.const 116)) (then ;; t
      (unreachable)))
    (if (i32.eq (local.get $op) (i32.const 108)) (then ;; l
      (loop $forever (br $forever))))
    (if (i32.eq (local.get $op) (i32.const 114)) (then ;; r
      (return (call $recurse (i32.const 0)))))
    (if (i32.eq (local.get $op) (i32.const 109)) (then ;; m
      (return (i32.eq (memory.grow (i32.const 2000)) (i32.const -1)))))
    (if (i32.eq (local.get $op) (i32.const 77)) (then ;; M
      (drop (memory.grow (i32.const 2000)))
      (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 120)) (then ;; x
      (call $proc_exit (i32.load8_u (i32.const 1025)))))
    (if (i32.eq (local.get $op) (i32.const 111)) (then ;; o
      (loop $flood
        (drop (call $write (i32.const 1) (i32.const 1024) (i32.const 4096)))
        (br $flood))))
    (i32.const 98)))
