package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/atfhq/atf/internal/autobatch"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// Store is atf's task store over one Redis (or Redis Cluster). It is safe
// for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	opts Options
	// scheduleLoaded: the server is known to have scheduleScript, so
	// storeTasks may pipeline EVALSHA with the queue pushes.
	scheduleLoaded atomic.Bool
	// noBLMPOP: the server lacks BLMPOP (Redis < 7, miniredis); blocking
	// pops take one task at a time with BRPOP.
	noBLMPOP atomic.Bool
	// schedules and results batch concurrent Schedule and SetResult calls
	// into shared script calls and round trips.
	schedules *autobatch.Batcher[*scheduleOp]
	results   *autobatch.Batcher[*resultOp]
}

// New returns a Store over rdb. Zero fields of opts take their defaults.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.Partitions <= 0 {
		opts.Partitions = DefaultPartitions
	}
	if opts.Partitions > 256 {
		// A task id names its partition in two hex digits.
		opts.Partitions = 256
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.EnqueueTimeout <= 0 {
		opts.EnqueueTimeout = DefaultEnqueueTimeout
	}
	opts.DispatchLead = min(max(opts.DispatchLead, 0), MaxDispatchLead)
	s := &Store{rdb: rdb, opts: opts}
	s.schedules, s.results = autobatch.New(s.schedule), autobatch.New(s.setResults)
	return s
}

// Partitions is the number of task partitions.
func (s *Store) Partitions() int { return s.opts.Partitions }

// PartitionOf is the partition a task id lives in. A malformed id is
// ErrNotFound: no task can have it.
func (s *Store) PartitionOf(id string) (int, error) {
	if len(id) != 2+ulid.EncodedSize {
		return 0, notAnID(id)
	}
	p, err := strconv.ParseUint(id[:2], 16, 8)
	if err != nil || strings.ToLower(id[:2]) != id[:2] || int(p) >= s.opts.Partitions {
		return 0, notAnID(id)
	}
	if _, err := ulid.ParseStrict(id[2:]); err != nil || strings.ToLower(id[2:]) != id[2:] {
		return 0, notAnID(id)
	}
	return int(p), nil
}

func notAnID(id string) error {
	return errorf(ErrNotFound, "task %q not found: it is not an atf task id (2 hex digits of partition and a lowercase ULID)", id)
}

// QueueKey is the queue of ready tasks of one lambda and priority. All
// queues share the {q} slot, so one script can pop from several.
func (s *Store) QueueKey(ns, lambda string, priority int) string {
	return "atf:{q}:" + ns + ":" + lambda + ":" + strconv.Itoa(priority)
}

// newID is a fresh task id in partition p: two lowercase hex digits of the
// partition, then a lowercase ULID timestamped with the store's clock.
func (s *Store) newID(p int, now time.Time) string {
	id := ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy())
	// Two hex digits of partition (at most 256), then the ULID in
	// lowercase Crockford base32, in one allocation.
	const hex = "0123456789abcdef"
	var b [2 + ulid.EncodedSize]byte
	b[0], b[1] = hex[p>>4&15], hex[p&15]
	_ = id.MarshalTextTo(b[2:])
	for i := 2; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b[:])
}

// partitionFor is the partition of a new task: the hash of its key when it
// has one (so deduplication stays inside one partition), else random.
func (s *Store) partitionFor(ns, lambda, key string) int {
	if key == "" {
		return rand.IntN(s.opts.Partitions)
	}
	h := fnv.New32a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(lambda))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(s.opts.Partitions))
}

func (s *Store) now() time.Time { return s.opts.Now() }

// Key builders: the layout in doc.go, in one place.

const wakeChannel = "atf:wake"

// MaxSweep is the longest a store consumer may go without looking at a
// partition it owns (consumer.Config.Sweep is at most this). A trigger set
// further ahead than MaxSweep plus a second's slack needs no wake-up: the
// consumer looks at the partition before it is due anyway and sleeps
// until it. Claims (30 s by default) set such triggers, and skip the
// partition's earliest-trigger read a wake-up costs.
const MaxSweep = 10 * time.Second

// wakeFor is the wake channel to pass a script setting a trigger at at,
// "" when no wake-up is needed.
// DispatchLead is Options.DispatchLead: how long before its execute_at a
// scheduled task is enqueued.
func (s *Store) DispatchLead() time.Duration { return s.opts.DispatchLead }

func wakeFor(now, at time.Time) string {
	if at.Sub(now) >= MaxSweep+time.Second {
		return ""
	}
	return wakeChannel
}

func moduleKey(sha string) string              { return "atf:{mod}:" + sha }
func lambdaKey(ns, name string) string         { return "atf:{lam}:" + ns + ":lambda:" + name }
func lambdasKey(ns string) string              { return "atf:{lam}:" + ns + ":lambdas" }
func namespacesKey() string                    { return "atf:{lam}:namespaces" }
func lambdaVersionsKey(ns string) string       { return "atf:{lam}:" + ns + ":versions" }
func partPrefix(p int) string                  { return "atf:{p" + strconv.Itoa(p) + "}:" }
func taskKey(p int, id string) string          { return partPrefix(p) + "task:" + id }
func triggerKey(p int) string                  { return partPrefix(p) + "trigger" }
func indexKey(p int, ns, lambda string) string { return partPrefix(p) + "idx:" + ns + ":" + lambda }
func dedupKey(p int, ns, lambda, key string) string {
	return partPrefix(p) + "key:" + ns + ":" + lambda + ":" + key
}

// Times are stored as unix milliseconds; zero time as absent.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func durMS(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// stateError is an error whose message is written for people and which
// unwraps to one of the package's sentinel errors.
type stateError struct {
	msg  string
	base error
}

func (e *stateError) Error() string { return e.msg }
func (e *stateError) Unwrap() error { return e.base }

func errorf(base error, format string, args ...any) error {
	return &stateError{msg: fmt.Sprintf(format, args...), base: base}
}

// runPipelined runs one script once per call in a single round trip. A
// server that does not have the script yet (NOSCRIPT) gets it loaded and
// the calls it refused are sent again.
func (s *Store) runPipelined(ctx context.Context, script *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	pending := make([]int, len(calls))
	for i := range pending {
		pending[i] = i
	}
	for round := 0; len(pending) > 0; round++ {
		pipe := s.rdb.Pipeline()
		for _, i := range pending {
			cmds[i] = script.EvalSha(ctx, pipe, calls[i].keys, calls[i].args...)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		var again []int
		for _, i := range pending {
			if err := cmds[i].Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && round == 0 {
				again = append(again, i)
			}
		}
		if len(again) > 0 {
			if err := script.Load(ctx, s.rdb).Err(); err != nil {
				return nil, fmt.Errorf("store: load script: %w", err)
			}
		}
		pending = again
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			return cmds, fmt.Errorf("store: %w", err)
		}
	}
	return cmds, nil
}

// scriptGroups splits n items, item i in partition part(i), into the
// groups of indexes that go into one script call: everything on a
// standalone server, one partition each on a cluster (a script touches one
// slot there).
func (s *Store) scriptGroups(n int, part func(i int) int) [][]int {
	if _, cluster := s.rdb.(*redis.ClusterClient); !cluster {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	var groups [][]int
	byPart := map[int]int{}
	for i := range n {
		p := part(i)
		g, ok := byPart[p]
		if !ok {
			g = len(groups)
			byPart[p] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

type scriptCall struct {
	keys []string
	args []any
}
