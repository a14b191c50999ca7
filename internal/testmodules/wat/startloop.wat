;; Loops forever in its start function, which wasm runs at instantiation.
(module
  (memory (export "memory") 1)
  (func $spin (loop $l (br $l)))
  (start $spin)
  (func (export "_start")))
