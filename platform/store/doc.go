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
//	atf:{lam}:<ns>:versions                hash: lambda name -> last version
//	                                       (kept across deletes: a version
//	                                       number never names two deploys)
//	atf:{lam}:namespaces                   set of namespaces that deployed a
//	                                       lambda (queue depth gauge)
//	atf:{p<P>}:task:<id>                   task hash (P = partition of id)
//	atf:{p<P>}:trigger                     zset: task id -> next trigger (ms)
//	atf:{p<P>}:idx:<ns>:<lambda>           zset: task id -> created (ms)
//	atf:{p<P>}:key:<ns>:<lambda>:<key>     task key -> task id (dedup)
//	atf:{q}:<ns>:<lambda>:<priority>       queue: list of ready task ids
//	atf:wake                               pub/sub: "<P> <ms>" when a task
//	                                       gets a trigger earlier than any
//	                                       its partition had
//
// Concurrency caps, controllers and consumers add (queue.go, lease.go):
//
//	atf:{q}:running:<ns>:<lambda>          zset: task id -> when its slot
//	                                       frees by itself (max_concurrency)
//	atf:{q}:ctl:<controller>               list: tokens that end a
//	                                       controller's blocked pops
//	atf:{lease}:consumers                  zset: consumer -> membership expiry
//	atf:{lease}:owner, atf:{lease}:until   hashes: partition -> owner, expiry
//	atf:lambdas                            pub/sub: "<ns>/<name>" on deploy
//	                                       and delete
//
// Gating adds atf:{lam}:<ns>:gate:<name>, atf:{p<P>}:gate and
// atf:{p<P>}:parked:<ns>:<lambda> (gate.go); periodic tasks add
// atf:{lam}:schedules and the atf:cron channel (schedule.go); task logs
// add atf:{p<P>}:logs:<id> (logs.go).
//
// P is the partition number in decimal. Task hash fields have short names
// (codec.go): ns lv st att key col w ea sa fa ua ra hb pg err out otr dur
// tok cr pk rq xs; "w", the packed work field, holds what never changes
// (lambda, max attempts, priority, execute_at, creation, traceparent,
// payload). Tasks stored by earlier versions have lam max q (before work
// field version 2) or lam max q pri pl xa ca tp (before any work field)
// and keep working. Times are unix milliseconds, durations
// milliseconds except "dur" (microseconds), "err" is an atf.v1.TaskError
// in proto binary, "st" the atf.v1.TaskState number.
//
// A task id names its partition in its first two hex digits, so any holder
// of an id finds its keys without a lookup. Tasks with a key live in the
// partition of hash(namespace, lambda, key), which keeps deduplication
// inside one script.
//
// # State changes
//
// Every change of a task is one Lua script over the keys of its partition
// (see scripts.go). The hot ones — schedule, claim, result — take a batch
// of tasks per call (one call per partition on a cluster): what concurrent
// callers do at the same moment is gathered (internal/autobatch), since a
// script call's fixed cost in redis-server exceeds a task's own work. A
// queue entry is written beside the script, apart from it: losing one is
// never fatal, since the task's enqueue timeout in the trigger set brings
// it back (ATF's design).
//
// The trigger set holds every live task with the time the store consumer
// must look at it again (ProcessDue):
//
//	NEW                execute_at - lead    -> ENQUEUED, pushed
//	ENQUEUED           enqueued + enqueue   -> pushed again (lost push)
//	CLAIMED            claimed + claim      -> ENQUEUED, attempt - 1;
//	                                           CANCELLED when cancel was
//	                                           requested (never started)
//	PROCESSING         heartbeat + timeout  -> ENQUEUED with a
//	                                           HEARTBEAT_TIMEOUT error;
//	                                           FATAL_FAILURE at max
//	                                           attempts; CANCELLED when
//	                                           cancel was requested
//	RETRIABLE_FAILURE  retry_at             -> ENQUEUED, pushed
//
// Terminal tasks (SUCCESS, FATAL_FAILURE, CANCELLED) leave the set; once
// the retention has run out since they finished, the store consumer's trim
// (TrimIndexes) deletes their hash, key mapping and index entries. Retry brings a
// FATAL_FAILURE or CANCELLED task back as ENQUEUED with attempt 0.
//
// # Fencing
//
// Claim raises the task's token; Heartbeat and SetResult act only for the
// current token while the task is CLAIMED or PROCESSING, so an executor
// that lost its claim (timeout, re-enqueue, another claimer) can neither
// extend it nor record a result: it is told DIRECTIVE_CLAIM_LOST or gets
// ErrClaimLost, and nothing changes.
//
// # Wakeups
//
// A script that gives a task a trigger earlier than its partition's
// earliest publishes "<P> <ms>" on atf:wake, so a consumer sleeping until
// that earliest trigger wakes up in time (Wakeups). Tasks due now are
// enqueued by Schedule itself.
package store
