;; Call-bound loops: a loop calling, 5M times, a small function that
;; itself loops 4 times (the worst case for the per-entry fuel count and
;; the loop-head counter of a short loop). For BenchmarkInterleavedRatio.
(module
  (memory 1)
  (func $inner (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $i) (local.get $n))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 4))))
    (local.get $acc))
  (func (export "_start")
    (local $k i32) (local $s i32)
    (loop $outer
      (local.set $s (i32.add (local.get $s) (call $inner (local.get $k))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $outer (i32.lt_u (local.get $k) (i32.const 5000000))))
    ;; use the sum, so that nothing can drop the calls
    (if (i32.eq (local.get $s) (i32.const 12345)) (then unreachable))))
