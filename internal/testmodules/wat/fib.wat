;; Call-heavy CPU work: naive recursive fib(N), N from nothing (fixed 30),
;; result discarded; a benchmark of the instrumentation's cost per call.
(module
  (memory (export "memory") 1)
  (func $fib (param i32) (result i32)
    (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
      (then (local.get 0))
      (else (i32.add
        (call $fib (i32.sub (local.get 0) (i32.const 1)))
        (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
  (func (export "_start")
    (if (i32.ne (call $fib (i32.const 30)) (i32.const 832040))
      (then unreachable))))
