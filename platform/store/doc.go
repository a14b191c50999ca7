// Package store is atf's task store: Redis, the source of truth for lambdas,
// modules and tasks.
//
// # Keys
//
// Every key starts with "atf:" and carries a hash tag so that the keys one
// Lua script touches always share a Redis Cluster slot:
//
//	atf:{mod}:<sha256>                     module bytes, content-addressed
//	atf:{lam}:<ns>:lambda:<name>           lambda hash
//	atf:{lam}:<ns>:lambdas                 set of lambda names
//	atf:{p<P>}:task:<id>                   task hash (P = partition of id)
//	atf:{p<P>}:trigger                     zset: task id -> next trigger (ms)
//	atf:{p<P>}:idx:<ns>:<lambda>           zset: task id -> created (ms)
//	atf:{p<P>}:key:<ns>:<lambda>:<key>     task key -> task id (dedup)
//	atf:{q}:<ns>:<lambda>:<priority>       queue: list of ready task ids
//	atf:wake                               pub/sub: "<P> <ms>" when a task
//	                                       gets a trigger earlier than now+1s
//
// A task id names its partition in its first two hex digits, so any holder
// of an id finds its keys without a lookup. Tasks with a key live in the
// partition of hash(namespace, lambda, key), which keeps deduplication
// inside one script.
//
// # State changes
//
// Every change of a task is one Lua script over the keys of its partition
// (see scripts.go). A queue entry is written after the script, apart from
// it: losing one is never fatal, since the task's enqueue timeout in the
// trigger set brings it back (ATF's design).
package store
