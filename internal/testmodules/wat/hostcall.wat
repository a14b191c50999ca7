;; A command that calls a host function of atf_v1: ping(7) must answer 8,
;; else the module traps. Tests register their own atf_v1 with ping.
(module
  (import "atf_v1" "ping" (func $ping (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.ne (call $ping (i32.const 7)) (i32.const 8))
      (then unreachable))))
