;; A reactor: exports _initialize and a handler but no _start.
(module
  (memory (export "memory") 1)
  (func (export "_initialize"))
  (func (export "handle") (param i32 i32) (result i32)
    (i32.const 0)))
