;; Not quite a reactor: exports _initialize and a handler, but the handler
;; is not atf_handle(i32) -> i32.
(module
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "handle") (param i32 i32) (result i32)
    (i32.const 0)))
