;; A command that imports a function atf does not offer (env.foo).
(module
  (import "env" "foo" (func $foo))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $foo)))
