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
	"errors"
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
}

// Defaults of Config.
const (
	DefaultEnqueueTimeout   = 30 * time.Second
	DefaultClaimTimeout     = 30 * time.Second
	DefaultHeartbeatTimeout = 10 * time.Second
	DefaultBatch            = 500
	// DefaultMaxSleep bounds a sleep, so that a lost wake-up (pub/sub is
	// fire-and-forget) delays a task by at most this much.
	DefaultMaxSleep = time.Second
)

// Config configures a Consumer.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// Timeouts of the state table. Zero fields take the defaults above.
	Timeouts store.Timeouts
	// Partitions owned; nil means all of the store's.
	Partitions []int
	// Batch is the most tasks one ProcessDue moves. Default 500.
	Batch int
	// MaxSleep. Default 1s.
	MaxSleep time.Duration
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
	if c.MaxSleep <= 0 {
		c.MaxSleep = DefaultMaxSleep
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Partitions == nil {
		for p := range c.Store.Partitions() {
			c.Partitions = append(c.Partitions, p)
		}
	}
	return c
}

// Consumer runs one loop over its partitions.
type Consumer struct {
	cfg Config
}

// New returns a Consumer.
func New(cfg Config) *Consumer {
	return &Consumer{cfg: cfg.withDefaults()}
}

// Run moves due tasks until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	wake := c.cfg.Store.Wakeups(ctx)
	owned := make(map[int]bool, len(c.cfg.Partitions))
	for _, p := range c.cfg.Partitions {
		owned[p] = true
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next, err := c.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("store consumer pass failed; retrying", "err", err)
			next = time.Now().Add(100 * time.Millisecond)
		}
		sleep := c.cfg.MaxSleep
		if !next.IsZero() {
			sleep = min(sleep, time.Until(next))
		}
		timer.Reset(max(sleep, 0))
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
			if !owned[p] {
				goto wait
			}
			timer.Stop() // Go 1.23+: no stale tick survives Stop
		}
	}
}

// RunOnce moves every due task of the owned partitions and returns the
// earliest trigger left (zero when none).
func (c *Consumer) RunOnce(ctx context.Context) (time.Time, error) {
	var (
		mu   sync.Mutex
		next time.Time
		errs []error
		wg   sync.WaitGroup
	)
	for _, p := range c.cfg.Partitions {
		wg.Go(func() {
			n, err := c.drain(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if !n.IsZero() && (next.IsZero() || n.Before(next)) {
				next = n
			}
		})
	}
	wg.Wait()
	return next, errors.Join(errs...)
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
