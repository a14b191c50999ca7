;; Exercises what the instrumentation rewrites in recursive functions and
;; traps (unreachable) if any result is wrong: locals after params (the
;; inner clone shifts them), return and br to the function's label,
;; multi-value results, mutual recursion, recursion through call_indirect,
;; recursive calls around non-recursive helpers with and without loops.
(module
  (memory (export "memory") 1)
  (type $i2i (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $ind $sq)
  ;; sum 1..n with a local, an early return and a br to the function label
  (func $sum (param $n i32) (result i32) (local $acc i32)
    (local.set $acc (local.get $n))
    (if (i32.eqz (local.get $n)) (then (return (i32.const 0))))
    (if (i32.eq (local.get $n) (i32.const 1)) (then (br 1 (i32.const 1))))
    (i32.add (local.get $acc) (call $sum (i32.sub (local.get $n) (i32.const 1)))))
  ;; (n, n*(n+1)/2) through multi-value results
  (func $pair (param $n i32) (result i32 i32) (local $a i32) (local $b i32)
    (if (i32.eqz (local.get $n)) (then (return (i32.const 0) (i32.const 0))))
    (call $pair (i32.sub (local.get $n) (i32.const 1)))
    (local.set $b) (local.set $a)
    (i32.add (local.get $a) (i32.const 1))
    (i32.add (local.get $b) (local.get $n)))
  ;; mutual recursion
  (func $even (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
      (else (call $odd (i32.sub (local.get 0) (i32.const 1))))))
  (func $odd (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
      (else (call $even (i32.sub (local.get 0) (i32.const 1))))))
  ;; a non-recursive helper with a loop: sum 0..n-1
  (func $tri (param $n i32) (result i32) (local $i i32) (local $s i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $s (i32.add (local.get $s) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $s))
  ;; a non-recursive helper without a loop, called indirectly
  (func $sq (param i32) (result i32) (i32.mul (local.get 0) (local.get 0)))
  ;; recursion through the table, calling both helpers on the way
  (func $ind (param $n i32) (result i32) (local $x i32)
    (local.set $x (i32.add (call $tri (local.get $n))
                           (call_indirect (type $i2i) (local.get $n) (i32.const 1))))
    (if (result i32) (i32.eqz (local.get $n)) (then (local.get $x))
      (else (i32.add (local.get $x)
        (call_indirect (type $i2i) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0))))))
  (func (export "_start") (local $a i32)
    (if (i32.ne (call $sum (i32.const 100)) (i32.const 5050)) (then unreachable))
    (call $pair (i32.const 50))
    (if (i32.ne (i32.const 1275)) (then unreachable))
    (if (i32.ne (i32.const 50)) (then unreachable))
    (if (i32.ne (call $even (i32.const 1001)) (i32.const 0)) (then unreachable))
    (if (i32.ne (call $odd (i32.const 1001)) (i32.const 1)) (then unreachable))
    ;; sum over k=0..10 of tri(k) + k^2 = 165 + 385
    (if (i32.ne (call_indirect (type $i2i) (i32.const 10) (i32.const 0)) (i32.const 550)) (then unreachable))))
