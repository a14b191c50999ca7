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
	DefaultSweep = store.MaxSweep
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
	// Sweep. Default and at most store.MaxSweep (10s): the store sends no
	// wake-up for triggers set further ahead.
	Sweep time.Duration
	// TrimEvery is how often the owned partitions' index sets are trimmed
	// of tasks gone (IndexTrimmer). Default DefaultTrimEvery (5 min).
	TrimEvery time.Duration
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
	if c.Sweep <= 0 || c.Sweep > store.MaxSweep {
		c.Sweep = DefaultSweep
	}
	if c.TrimEvery <= 0 {
		c.TrimEvery = DefaultTrimEvery
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

// Consumer runs one worker per partition it owns: each sleeps until its
// partition's earliest trigger, a wake-up for it, or its sweep, then moves
// what is due. Partitions do not wait for each other, so at thousands of
// due tasks a second spread over all partitions, one partition's round
// trips do not make another's tasks late.
type Consumer struct {
	cfg Config

	mu      sync.Mutex
	owned   map[int]bool
	next    map[int]time.Time // earliest trigger per partition (RunOnce); zero: none
	workers map[int]*worker   // while Run runs
}

// worker is the goroutine of one owned partition.
type worker struct {
	wake   chan struct{} // buffered 1: look at the partition now
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Consumer.
func New(cfg Config) *Consumer {
	c := &Consumer{cfg: cfg.withDefaults(), owned: map[int]bool{}, next: map[int]time.Time{}, workers: map[int]*worker{}}
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
	if ts, ok := c.cfg.Store.(IndexTrimmer); ok {
		trimDone := make(chan struct{})
		go func() { defer close(trimDone); c.runTrim(ctx, ts) }()
		defer func() { <-trimDone }()
	}
	defer c.stopWorkers()
	leasing := c.cfg.Partitions == nil
	if leasing {
		defer func() {
			c.stopWorkers() // before the release: no pass after it
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := c.cfg.Store.ReleasePartitions(rctx, c.cfg.ID); err != nil {
				c.cfg.Logger.Warn("releasing partitions failed; their leases run out", "err", err)
			}
		}()
	} else {
		c.startWorkers(ctx)
	}
	renew := time.NewTimer(0)
	if !leasing {
		renew.Stop()
	}
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-renew.C:
			if err := c.renew(ctx); err != nil && ctx.Err() == nil {
				c.cfg.Logger.Warn("renewing partition leases failed", "err", err)
			}
			c.startWorkers(ctx)
			renew.Reset(c.cfg.Lease / 4)
		case p, ok := <-wake:
			if !ok {
				wake = nil
				continue
			}
			c.mu.Lock()
			w := c.workers[p]
			c.mu.Unlock()
			if w != nil {
				select {
				case w.wake <- struct{}{}:
				default: // a look is pending already
				}
			}
		}
	}
}

func (c *Consumer) owns(p int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owned[p]
}

// startWorkers makes the workers match the owned partitions: a worker for
// each new one (it looks at its partition at once), none for a lost one.
func (c *Consumer) startWorkers(ctx context.Context) {
	c.mu.Lock()
	var stop []*worker
	for p, w := range c.workers {
		if !c.owned[p] {
			stop = append(stop, w)
			delete(c.workers, p)
		}
	}
	for p := range c.owned {
		if c.workers[p] != nil {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
		c.workers[p] = w
		go func() {
			defer close(w.done)
			c.runPartition(wctx, p, w.wake)
		}()
	}
	c.mu.Unlock()
	for _, w := range stop {
		w.cancel()
		<-w.done
	}
}

// stopWorkers stops every worker and waits for them.
func (c *Consumer) stopWorkers() {
	c.mu.Lock()
	ws := c.workers
	c.workers = map[int]*worker{}
	c.mu.Unlock()
	for _, w := range ws {
		w.cancel()
	}
	for _, w := range ws {
		<-w.done
	}
}

// runPartition is one partition's worker: drain, sleep until the earliest
// trigger left (or the sweep, or a wake-up), again.
func (c *Consumer) runPartition(ctx context.Context, p int, wake <-chan struct{}) {
	sweep := c.cfg.Sweep
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-wake:
			timer.Stop() // Go 1.23+: no stale tick survives Stop
		}
		next, err := c.drain(ctx, p)
		if ctx.Err() != nil {
			return
		}
		wait := sweep
		if err != nil {
			c.cfg.Logger.Warn("store consumer pass failed; retrying", "partition", p, "err", err)
			wait = 100 * time.Millisecond
		} else if !next.IsZero() {
			wait = min(wait, time.Until(next))
		}
		c.mu.Lock()
		c.next[p] = next
		c.mu.Unlock()
		timer.Reset(max(wait, 0))
	}
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
	}
	for p := range c.owned {
		if !owned[p] {
			delete(c.next, p)
		}
	}
	c.owned = owned
	return nil
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
