;; A command that recurses without bound through a table, with a helper
;; that loops on every level.
(module
  (memory (export "memory") 1)
  (type $t (func (param i32) (result i32)))
  (table 1 funcref)
  (elem (i32.const 0) $down)
  (func $work (param $n i32) (result i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 3))))
    (i32.add (local.get $n) (local.get $i)))
  (func $down (param i32) (result i32)
    (i32.add (call_indirect (type $t) (call $work (local.get 0)) (i32.const 0)) (i32.const 1)))
  (func (export "_start")
    (drop (call $down (i32.const 0)))))
