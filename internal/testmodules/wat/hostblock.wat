;; A command that calls atf_v1.block(), then loops forever. Tests register
;; their own atf_v1 whose block waits (for the run context, or for
;; nothing).
(module
  (import "atf_v1" "block" (func $block))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $block)
    (loop $l (br $l))))
