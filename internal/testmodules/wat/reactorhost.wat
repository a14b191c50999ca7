;; A reactor whose handler calls atf_v1.ping once (host tests register it).
(module
  (import "atf_v1" "ping" (func $ping (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "atf_handle") (param i32) (result i32)
    (drop (call $ping (i32.const 1)))
    (i32.const 0)))
