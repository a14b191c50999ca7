;; A module that is neither a command nor a reactor: no _start, no _initialize.
(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))
