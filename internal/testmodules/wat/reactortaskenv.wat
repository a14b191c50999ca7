;; A reactor whose handler writes its task's environment as atf_v1.task_env
;; returns it, and the calls this instance served:
;;
;;   ATF_TASK_ID=<value>;ATF_ATTEMPT=<value>;TRACEPARENT=<value>;#<calls>
;;
;; A value task_env does not return is written as "!" and the (negative)
;; code's last digit, e.g. "!2" for NOT_FOUND. The values are read into an
;; 8-byte buffer first, so that a longer one takes the "too small, call
;; again" path. taskenv.wat is the same as a command.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "atf_v1" "task_env" (func $task_env (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "ATF_TASK_ID")  ;; 11
  (data (i32.const 80) "ATF_ATTEMPT")  ;; 11
  (data (i32.const 96) "TRACEPARENT")  ;; 11
  (data (i32.const 112) "=;#!")
  (global $calls (mut i32) (i32.const 0))

  (func (export "_initialize"))

  ;; write writes [ptr, ptr+len) to stdout.
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))

  ;; var writes "<name>=<value>;" for the name at ptr (11 bytes).
  (func $var (param $ptr i32)
    (local $n i32)
    (call $write (local.get $ptr) (i32.const 11))
    (call $write (i32.const 112) (i32.const 1))
    (local.set $n (call $task_env (local.get $ptr) (i32.const 11) (i32.const 1024) (i32.const 8)))
    (if (i32.gt_s (local.get $n) (i32.const 8))
      (then (local.set $n (call $task_env (local.get $ptr) (i32.const 11) (i32.const 1024) (local.get $n)))))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then
        (call $write (i32.const 115) (i32.const 1))
        (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (i32.sub (i32.const 0) (local.get $n))))
        (local.set $n (i32.const 1))))
    (call $write (i32.const 1024) (local.get $n))
    (call $write (i32.const 113) (i32.const 1)))

  (func (export "atf_handle") (param i32) (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (call $var (i32.const 64))
    (call $var (i32.const 80))
    (call $var (i32.const 96))
    (call $write (i32.const 114) (i32.const 1))
    (i32.store8 (i32.const 1024) (i32.add (i32.const 48) (global.get $calls)))
    (call $write (i32.const 1024) (i32.const 1))
    (i32.const 0)))
