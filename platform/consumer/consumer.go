// Package consumer is ATF's store consumer. For each partition it owns it
// moves tasks whose next-trigger time has passed, as the state table of
// DESIGN.md says: NEW -> ENQUEUED at execute_at; ENQUEUED, CLAIMED and
// PROCESSING tasks past their timeouts back to their queues; RETRIABLE_FAILURE
// tasks on after their backoff.
//
// It sleeps until the earliest trigger of its partitions and is woken early
// when the store announces an earlier one (a task scheduled for the near
// future), so a task is moved within milliseconds of its time and an idle
// consumer costs Redis almost nothing.
package consumer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/atfhq/atf/platform/store"
)

// Store is what the consumer needs of the task store.
type Store interface {
	Partitions() int
	ProcessDue(ctx context.Context, partition int, t store.Timeouts, limit int) (int, time.Time, error)
	Wakeups(ctx context.Context) <-chan int
	BalancePartitions(ctx context.Context, owner string, lease time.Duration) ([]int, error)
	ReleasePartitions(ctx context.Context, owner string) error
}

// Defaults of Config.
const (
	DefaultEnqueueTimeout   = 30 * time.Second
	DefaultClaimTimeout     = 30 * time.Second
	DefaultHeartbeatTimeout = 10 * time.Second
	DefaultBatch            = 500
	// DefaultSweep is how often every owned partition is looked at even
	// when nothing says it is due: a wake-up lost while the subscription
	// reconnected delays a task by at most this much.
	DefaultSweep = 10 * time.Second
	// DefaultLease is how long a consumer holds its partitions without
	// renewing; another takes them within one lease of its death.
	DefaultLease = 10 * time.Second
)

// Config configures a Consumer.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// Timeouts of the state table. Zero fields take the defaults above.
	Timeouts store.Timeouts
	// Partitions, when set, are owned for good; nil means partitions are
	// shared out among all running consumers by leases.
	Partitions []int
	// ID names this consumer among the lease holders. Default: random.
	ID string
	// Lease. Default 10s; renewed every quarter of it.
	Lease time.Duration
	// Batch is the most tasks one ProcessDue moves. Default 500.
	Batch int
	// Sweep. Default 10s.
	Sweep time.Duration
}

func (c Config) withDefaults() Config {
	if c.Timeouts.Enqueue <= 0 {
		c.Timeouts.Enqueue = DefaultEnqueueTimeout
	}
	if c.Timeouts.Claim <= 0 {
		c.Timeouts.Claim = DefaultClaimTimeout
	}
	if c.Timeouts.Heartbeat <= 0 {
		c.Timeouts.Heartbeat = DefaultHeartbeatTimeout
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	if c.Sweep <= 0 {
		c.Sweep = DefaultSweep
	}
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.ID == "" {
		c.ID = rand.Text()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Consumer runs one loop over its partitions.
type Consumer struct {
	cfg Config

	mu    sync.Mutex
	owned map[int]bool
	next  map[int]time.Time // earliest trigger per owned partition; zero: none
}

// New returns a Consumer.
func New(cfg Config) *Consumer {
	c := &Consumer{cfg: cfg.withDefaults(), owned: map[int]bool{}, next: map[int]time.Time{}}
	for _, p := range c.cfg.Partitions {
		c.owned[p] = true
	}
	return c
}

// Run moves due tasks until ctx ends, then gives its partitions up.
func (c *Consumer) Run(ctx context.Context) error {
	wake := c.cfg.Store.Wakeups(ctx)
	if cs, ok := c.cfg.Store.(CronStore); ok {
		cronDone := make(chan struct{})
		go func() { defer close(cronDone); c.runCron(ctx, cs) }()
		defer func() { <-cronDone }()
	}
	leasing := c.cfg.Partitions == nil
	if leasing {
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := c.cfg.Store.ReleasePartitions(rctx, c.cfg.ID); err != nil {
				c.cfg.Logger.Warn("releasing partitions failed; their leases run out", "err", err)
			}
		}()
	}
	var renewAt, sweepAt time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	due := map[int]bool{} // partitions to look at now
	for {
		now := time.Now()
		if leasing && !now.Before(renewAt) {
			if err := c.renew(ctx); err != nil && ctx.Err() == nil {
				c.cfg.Logger.Warn("renewing partition leases failed", "err", err)
			}
			renewAt = now.Add(c.cfg.Lease / 4)
		}
		sweep := !now.Before(sweepAt)
		if sweep {
			sweepAt = now.Add(c.cfg.Sweep)
		}
		c.runDue(ctx, sweep, due)
		clear(due)

		wakeAt := sweepAt
		if leasing && renewAt.Before(wakeAt) {
			wakeAt = renewAt
		}
		c.mu.Lock()
		for _, n := range c.next {
			if !n.IsZero() && n.Before(wakeAt) {
				wakeAt = n
			}
		}
		c.mu.Unlock()
		timer.Reset(max(time.Until(wakeAt), 0))
	wait:
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case p, ok := <-wake:
			if !ok {
				wake = nil
				goto wait
			}
			if !c.owns(p) {
				goto wait
			}
			due[p] = true
			timer.Stop() // Go 1.23+: no stale tick survives Stop
		}
	}
}

func (c *Consumer) owns(p int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owned[p]
}

// renew renews the leases and takes the partitions this consumer owns now.
func (c *Consumer) renew(ctx context.Context) error {
	ps, err := c.cfg.Store.BalancePartitions(ctx, c.cfg.ID, c.cfg.Lease)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	owned := make(map[int]bool, len(ps))
	for _, p := range ps {
		owned[p] = true
		if !c.owned[p] {
			c.next[p] = time.Now() // new to us: look at it now
		}
	}
	for p := range c.owned {
		if !owned[p] {
			delete(c.next, p)
		}
	}
	c.owned = owned
	return nil
}

// runDue processes the owned partitions that are due, were woken, or all
// of them on a sweep.
func (c *Consumer) runDue(ctx context.Context, sweep bool, woken map[int]bool) {
	now := time.Now()
	var ps []int
	c.mu.Lock()
	for p := range c.owned {
		n := c.next[p]
		if sweep || woken[p] || (!n.IsZero() && !n.After(now)) {
			ps = append(ps, p)
		}
	}
	c.mu.Unlock()
	if len(ps) == 0 {
		return
	}
	if err := c.process(ctx, ps); err != nil && ctx.Err() == nil {
		c.cfg.Logger.Warn("store consumer pass failed; retrying", "err", err)
		c.mu.Lock()
		for _, p := range ps {
			c.next[p] = now.Add(100 * time.Millisecond)
		}
		c.mu.Unlock()
	}
}

// RunOnce moves every due task of the owned partitions (all of them when
// it owns none yet) and returns the earliest trigger left (zero when none).
// Tests call it directly.
func (c *Consumer) RunOnce(ctx context.Context) (time.Time, error) {
	c.mu.Lock()
	var ps []int
	for p := range c.owned {
		ps = append(ps, p)
	}
	c.mu.Unlock()
	if len(ps) == 0 {
		for p := range c.cfg.Store.Partitions() {
			ps = append(ps, p)
		}
	}
	err := c.process(ctx, ps)
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, p := range ps {
		if n := c.next[p]; !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next, err
}

// process drains partitions concurrently and records their next triggers.
func (c *Consumer) process(ctx context.Context, ps []int) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, p := range ps {
		wg.Go(func() {
			n, err := c.drain(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
				return
			}
			c.mu.Lock()
			c.next[p] = n
			c.mu.Unlock()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// drain processes one partition until no due task is left.
func (c *Consumer) drain(ctx context.Context, p int) (time.Time, error) {
	for {
		moved, next, err := c.cfg.Store.ProcessDue(ctx, p, c.cfg.Timeouts, c.cfg.Batch)
		if err != nil {
			return time.Time{}, err
		}
		if moved < c.cfg.Batch || ctx.Err() != nil {
			return next, nil
		}
	}
}
