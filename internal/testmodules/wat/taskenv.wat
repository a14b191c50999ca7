;; A command that writes its task's environment as atf_v1.task_env returns
;; it, like reactortaskenv.wat (without the call count):
;;
;;   ATF_TASK_ID=<value>;ATF_ATTEMPT=<value>;TRACEPARENT=<value>;
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "atf_v1" "task_env" (func $task_env (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "ATF_TASK_ID")
  (data (i32.const 80) "ATF_ATTEMPT")
  (data (i32.const 96) "TRACEPARENT")
  (data (i32.const 112) "=;#!")

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 16) (local.get $ptr))
    (i32.store (i32.const 20) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))

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

  (func (export "_start")
    (call $var (i32.const 64))
    (call $var (i32.const 80))
    (call $var (i32.const 96))))
