;; Never ends, and has no loop: two functions call each other through a
;; table, each call returning before the next, forever (bounded stack).
(module
  (memory (export "memory") 1)
  (type $t (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $fib $fib)
  ;; fib(40) without memoisation: ~10^9 calls, no loop anywhere.
  (func $fib (type $t) (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add
        (call_indirect (type $t) (i32.sub (local.get 0) (i32.const 1)) (i32.const 0))
        (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "_start")
    (drop (call $fib (i32.const 60)))))
