package telemetry

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
)

// atf's per-task counters, indexes into taskCounters and setCounts.n.
const (
	counterScheduled = iota
	counterStarted
	counterFinished
	counterEnqueued
	numCounters
)

// taskCounters are the per-task counters (atf.tasks.scheduled, started,
// finished, enqueued). Every measurement adds one to the sum of its
// attribute set. With exemplars off (Setup: tracing off and
// OTEL_METRICS_EXEMPLAR_FILTER unset) a measurement is nothing more, and
// atf keeps the sums itself — an atomic add per task and counter — and
// reports them at each collection through observable counters of the same
// names, units and descriptions: the same cumulative sums, exported the
// same way (Prometheus, OTLP). The SDK's Add cost ~0.3 µs of CPU each (it
// normalizes the attribute set and looks it up on every call), four per
// task. With exemplars on they are the SDK's counters, whose measurements
// can carry exemplars.
type taskCounters struct {
	sync    [numCounters]metric.Int64Counter // nil entries when counted
	counted *countedSets                     // nil: the SDK's counters
}

func newTaskCounters(meter metric.Meter, counted bool) taskCounters {
	var tc taskCounters
	if !counted {
		for i, d := range counterDefs {
			tc.sync[i] = must(meter.Int64Counter(d.name, metric.WithUnit("{task}"), metric.WithDescription(d.description)))
		}
		return tc
	}
	cs := &countedSets{byKey: map[setKey]*setCounts{}}
	obs := make([]metric.Observable, numCounters)
	for i, d := range counterDefs {
		cs.obs[i] = must(meter.Int64ObservableCounter(d.name, metric.WithUnit("{task}"), metric.WithDescription(d.description)))
		obs[i] = cs.obs[i]
	}
	if _, err := meter.RegisterCallback(cs.observe, obs...); err != nil {
		panic(err)
	}
	tc.counted = cs
	return tc
}

var counterDefs = [numCounters]struct{ name, description string }{
	counterScheduled: {"atf.tasks.scheduled", "Tasks stored by Schedule (deduplicated ones not counted)."},
	counterStarted:   {"atf.tasks.started", "Executions started by executors (one per attempt)."},
	counterFinished:  {"atf.tasks.finished", "Executions finished, by outcome (success, retry, fatal, cancelled, aborted)."},
	counterEnqueued:  {"atf.tasks.enqueued", "Tasks pushed to their queue, by reason: due (by the store consumer, or at once when scheduled due), retry, manual_retry, resume, and the re-enqueues enqueue_timeout, claim_timeout, heartbeat_timeout."},
}

// enabled reports whether counter i records: always when counted, else
// when the SDK's counter is enabled (not so for the no-op meter).
func (tc *taskCounters) enabled(ctx context.Context, i int) bool {
	return tc.counted != nil || tc.sync[i].Enabled(ctx)
}

// add adds one to counter i for set.
func (tc *taskCounters) add(ctx context.Context, i int, set *attrSet) {
	if tc.counted == nil {
		tc.sync[i].Add(ctx, 1, set.add...)
		return
	}
	tc.counted.of(set).n[i].Add(1)
}

// countedSets are the sums of the counted counters, one setCounts per
// attribute set.
type countedSets struct {
	obs [numCounters]metric.Int64ObservableCounter

	mu    sync.Mutex
	byKey map[setKey]*setCounts
	order []*setCounts // byKey's in the order of their first measurement
}

// setCounts are one attribute set's sums.
type setCounts struct {
	owner *countedSets
	opt   metric.ObserveOption // the set's attributes
	n     [numCounters]atomic.Int64
}

// of returns set's sums: the ones set points at when they are cs's (no
// lock), else found or made under cs.mu, by the set's key (a set built
// anew each time, past maxCachedSets, finds its sums there).
func (cs *countedSets) of(set *attrSet) *setCounts {
	if c := set.counts.Load(); c != nil && c.owner == cs {
		return c
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.byKey[set.key]
	if c == nil {
		c = &setCounts{owner: cs, opt: metric.WithAttributeSet(set.attrs)}
		cs.byKey[set.key] = c
		cs.order = append(cs.order, c)
	}
	set.counts.Store(c)
	return c
}

// observe reports every sum added to at least once (a synchronous counter
// has a stream for a set once a measurement named it), in the order of
// the sets' first measurements: past the SDK's cardinality limit, the
// same sets overflow at every collection, as they would have with the
// SDK's counters.
func (cs *countedSets) observe(_ context.Context, o metric.Observer) error {
	cs.mu.Lock()
	order := cs.order[:len(cs.order):len(cs.order)]
	cs.mu.Unlock()
	for _, c := range order {
		for i := range c.n {
			if v := c.n[i].Load(); v > 0 {
				o.ObserveInt64(cs.obs[i], v, c.opt)
			}
		}
	}
	return nil
}
