package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Periodic tasks (ATF's future work): a lambda's cron schedule. The store
// keeps the schedules; the store consumer that owns a schedule's partition
// (SchedulePartition) creates its tasks (platform/consumer/cron.go). Each
// tick's task has the key CronKey(tick), so a tick created twice — two
// consumers during a lease hand-over, a consumer restarted within the
// tick — is deduplicated to one task.
//
// Keys (besides those of doc.go):
//
//	atf:{lam}:schedules   hash: "<ns>/<lambda>" -> schedule (JSON)
//	atf:cron              pub/sub: "<ns>/<lambda>" when a schedule changes

// Schedule is a lambda's periodic schedule.
type Schedule struct {
	Namespace  string    `json:"-"`
	Lambda     string    `json:"-"`
	Cron       string    `json:"cron"`
	Payload    []byte    `json:"payload,omitempty"`
	Priority   int       `json:"priority,omitempty"`
	Collection string    `json:"collection,omitempty"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

const (
	schedulesKey    = "atf:{lam}:schedules"
	scheduleChannel = "atf:cron"
)

func scheduleField(ns, lambda string) string { return ns + "/" + lambda }

// CronKey is the task key of a schedule's tick.
func CronKey(tick time.Time) string { return "cron:" + strconv.FormatInt(tick.UnixMilli(), 10) }

// SchedulePartition is the partition whose owner creates the schedule's
// tasks.
func (s *Store) SchedulePartition(ns, lambda string) int {
	h := fnv.New32a()
	h.Write([]byte(ns))
	h.Write([]byte{0})
	h.Write([]byte(lambda))
	return int(h.Sum32() % uint32(s.opts.Partitions))
}

// SetSchedule sets (or replaces) a lambda's schedule and tells consumers.
// The frontend checks the cron expression; the store keeps it as given.
func (s *Store) SetSchedule(ctx context.Context, sc Schedule) error {
	if sc.Lambda == "" || sc.Cron == "" {
		return errorf(ErrInvalid, "a schedule needs a lambda and a cron expression")
	}
	if sc.Priority < 0 || sc.Priority > 9 {
		return errorf(ErrInvalid, "priority %d is out of range 0-9", sc.Priority)
	}
	sc.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
	b, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("store: set schedule of %q: %w", sc.Lambda, err)
	}
	f := scheduleField(sc.Namespace, sc.Lambda)
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, schedulesKey, f, b)
	pipe.Publish(ctx, scheduleChannel, f)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: set schedule of %q: %w", sc.Lambda, err)
	}
	return nil
}

// DeleteSchedule removes a lambda's schedule; none is not an error.
func (s *Store) DeleteSchedule(ctx context.Context, ns, lambda string) error {
	f := scheduleField(ns, lambda)
	pipe := s.rdb.Pipeline()
	pipe.HDel(ctx, schedulesKey, f)
	pipe.Publish(ctx, scheduleChannel, f)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: delete schedule of %q: %w", lambda, err)
	}
	return nil
}

// Schedules returns every schedule of every namespace, sorted by
// namespace and lambda.
func (s *Store) Schedules(ctx context.Context) ([]Schedule, error) {
	all, err := s.rdb.HGetAll(ctx, schedulesKey).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read schedules: %w", err)
	}
	out := make([]Schedule, 0, len(all))
	for f, v := range all {
		sc, err := decodeSchedule(f, v)
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b Schedule) int {
		return strings.Compare(scheduleField(a.Namespace, a.Lambda), scheduleField(b.Namespace, b.Lambda))
	})
	return out, nil
}

func decodeSchedule(field, v string) (Schedule, error) {
	var sc Schedule
	if err := json.Unmarshal([]byte(v), &sc); err != nil {
		return sc, fmt.Errorf("store: schedule %s: %w", field, err)
	}
	sc.Namespace, sc.Lambda, _ = strings.Cut(field, "/")
	return sc, nil
}

// ScheduleChanges reports that some schedule changed. The channel is
// buffered by one (changes coalesce); it closes when ctx ends. It returns
// once the subscription is in place.
func (s *Store) ScheduleChanges(ctx context.Context) <-chan struct{} {
	return s.changes(ctx, scheduleChannel)
}

// LambdaState is what the store keeps about a lambda besides its hash:
// its gate and its schedule.
type LambdaState struct {
	Gate     Gate
	Schedule *Schedule // nil: none
}

// LambdaStates returns the gate and schedule of each named lambda, in one
// round trip.
func (s *Store) LambdaStates(ctx context.Context, ns string, names []string) ([]LambdaState, error) {
	out := make([]LambdaState, len(names))
	if len(names) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	gates := make([]*redis.StringSliceCmd, len(names))
	fields := make([]string, len(names))
	for i, n := range names {
		gates[i] = pipe.HKeys(ctx, lambdaGateKey(ns, n))
		fields[i] = scheduleField(ns, n)
	}
	scheds := pipe.HMGet(ctx, schedulesKey, fields...)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: read lambda state: %w", err)
	}
	for i := range names {
		out[i].Gate = gateOf(gates[i].Val())
		if v, ok := scheds.Val()[i].(string); ok {
			sc, err := decodeSchedule(fields[i], v)
			if err != nil {
				return nil, err
			}
			out[i].Schedule = &sc
		}
	}
	return out, nil
}
