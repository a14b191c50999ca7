package telemetry

import (
	"context"
	"maps"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Scope is the instrumentation scope of atf's own spans and metrics.
const Scope = "github.com/atfhq/atf"

// Tracer is atf's tracer from the global provider Setup installs. It is
// kept while that provider stays: otel.Tracer takes the global provider's
// lock (and the SDK's) on every call, and every task starts several spans
// from goroutines running at once.
func Tracer() trace.Tracer { return currentTracer().t }

// Tracing reports whether the global tracer provider may record spans. It
// is false for the no-op providers (Setup's when tracing is off,
// trace/noop's) and for the API's default while it delegates to none of
// another kind: their spans record nothing and only carry their parent's
// context. The roles then start no span of their own, and build none of
// its options and attributes, for every task: the context they already
// hold carries the same parent (so logs still get trace ids).
func Tracing() bool {
	c := currentTracer()
	if c.undecided {
		on, _ := probe(c.t)
		return on
	}
	return c.on
}

func currentTracer() *providerTracer {
	tp := otel.GetTracerProvider()
	if c := tracer.Load(); c != nil && reflect.TypeOf(tp).Comparable() && c.tp == tp {
		return c
	}
	c := &providerTracer{tp: tp, t: tp.Tracer(Scope)}
	c.on, c.undecided = mayRecord(tp, c.t)
	tracer.Store(c)
	return c
}

// providerTracer is a tracer with the provider it came from.
type providerTracer struct {
	tp        trace.TracerProvider
	t         trace.Tracer
	on        bool // whether spans of tp may record (Tracing)
	undecided bool // tp is the API's default, delegating to no provider yet: Tracing probes each time
}

var tracer atomic.Pointer[providerTracer]

var noopProviderType = reflect.TypeOf(trace.NewNoopTracerProvider()) //nolint:staticcheck // Setup's provider when tracing is off

// mayRecord reports whether spans of tp, whose tracer is t, may record,
// and whether that may change while tp stays the global provider.
func mayRecord(tp trace.TracerProvider, t trace.Tracer) (on, undecided bool) {
	switch typ := reflect.TypeOf(tp); {
	case typ == noopProviderType, typ == reflect.TypeOf(tracenoop.TracerProvider{}):
		return false, false
	case typ.Kind() == reflect.Pointer && typ.Elem().PkgPath() == globalPkg:
		// The API's default, which otel.GetTracerProvider returns until a
		// provider is set, or again when it is set back. It delegates to
		// the first provider ever set (for good), or to none yet: then its
		// spans record nothing (unless go.opentelemetry.io/auto's eBPF
		// instrumentation is attached), until a provider is set. The kind
		// of span it starts tells.
		on, delegated := probe(t)
		return on, !delegated
	}
	return true, false
}

const globalPkg = "go.opentelemetry.io/otel/internal/global"

// probe starts a span with t, a tracer of the API's default provider, and
// reports whether the span may record and whether t delegates to a
// provider. The span's parent is not sampled, so a provider that records
// does not sample it (with the usual parent-based samplers); it is never
// ended.
func probe(t trace.Tracer) (on, delegated bool) {
	_, span := t.Start(probeContext, "atf.probe")
	typ := reflect.TypeOf(span)
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch pkg := typ.PkgPath(); {
	case pkg == globalPkg: // its own span: no delegate
		return false, false
	case pkg == "go.opentelemetry.io/otel/trace", pkg == "go.opentelemetry.io/otel/trace/noop":
		return false, true
	case strings.HasPrefix(pkg, "go.opentelemetry.io/auto/"): // eBPF, no delegate
		return true, false
	}
	return true, true
}

// probeContext carries a valid, unsampled remote parent.
var probeContext = trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1},
}))

// Attribute keys of atf's spans and metrics. OpenTelemetry has no semantic
// conventions for task queues; these follow its naming rules under atf.*.
const (
	KeyTaskID        = attribute.Key("atf.task.id")
	KeyNamespace     = attribute.Key("atf.namespace")
	KeyLambda        = attribute.Key("atf.lambda.name")
	KeyLambdaVersion = attribute.Key("atf.lambda.version")
	KeyAttempt       = attribute.Key("atf.task.attempt")
	KeyPriority      = attribute.Key("atf.task.priority")
	KeyOutcome       = attribute.Key("atf.task.outcome")
	KeyState         = attribute.Key("atf.task.state")
	KeyLimit         = attribute.Key("atf.task.limit")
	KeyReason        = attribute.Key("atf.enqueue.reason")
	KeyExecutor      = attribute.Key("atf.executor.id")
)

// Enqueue reasons (KeyReason): why the store consumer (or, for a task due
// now and a dead letter retried by hand, the frontend) pushed a task.
const (
	ReasonDue              = "due"               // NEW reached its execute_at
	ReasonRetry            = "retry"             // RETRIABLE_FAILURE's backoff passed
	ReasonEnqueueTimeout   = "enqueue_timeout"   // ENQUEUED too long: pushed again
	ReasonClaimTimeout     = "claim_timeout"     // CLAIMED, never started
	ReasonHeartbeatTimeout = "heartbeat_timeout" // PROCESSING, executor went quiet
	ReasonManualRetry      = "manual_retry"      // a dead letter sent back by RetryTask (span only)
	ReasonResume           = "resume"            // a task a pause held, enqueued by ResumeLambda (span only)
)

// cpuTimeDescription is atf.task.cpu.time's: sandbox.Result.CPUTime.
const cpuTimeDescription = "CPU time a task's module code used (a command's start function and _start, a reactor's atf_handle; not compilation, instantiation or a reactor's _initialize), read from the CPU clock of the executor thread that ran it; Linux only. By lambda."

// secondsBuckets suit latencies from a millisecond to minutes.
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// instruments are atf's metrics. Setup binds a new set to the provider it
// installs; until then they record into a no-op meter.
type instruments struct {
	meter            metric.Meter
	counters         taskCounters   // atf.tasks.scheduled, started, finished, enqueued
	hists            taskHistograms // atf.task.pickup.latency, start.lateness, execution.duration, cpu.time; atf.sandbox.memory.peak
	heartbeatsFailed metric.Int64Counter
	runningGauge     metric.Int64ObservableUpDownCounter
	queueDepth       metric.Int64ObservableGauge
}

var current atomic.Pointer[instruments]

func init() { current.Store(newInstruments(noop.NewMeterProvider().Meter(Scope), false, nil)) }

func inst() *instruments { return current.Load() }

// newInstruments makes atf's instruments with meter; counted: atf keeps
// the per-task counters' sums itself (taskCounters), for a meter whose
// measurements take no exemplars; hists, when not nil: atf keeps the
// per-task histograms in it (taskHistograms), reported by a producer of
// every reader of meter's provider.
func newInstruments(meter metric.Meter, counted bool, hists *countedHists) *instruments {
	return &instruments{
		meter:    meter,
		counters: newTaskCounters(meter, counted),
		hists:    newTaskHistograms(meter, hists),
		heartbeatsFailed: must(meter.Int64Counter("atf.executor.heartbeats.failed", metric.WithUnit("{heartbeat}"),
			metric.WithDescription("Heartbeat calls that failed (three in a row stop an executor)."))),
		runningGauge: must(meter.Int64ObservableUpDownCounter("atf.executor.sandboxes.running", metric.WithUnit("{sandbox}"),
			metric.WithDescription("Sandboxes running a task now."))),
		queueDepth: must(meter.Int64ObservableGauge("atf.queue.depth", metric.WithUnit("{task}"),
			metric.WithDescription("Task ids waiting in a lambda's queue at one priority (LLEN)."))),
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The functions below record nothing, and build no attribute set, when
// their instrument is not enabled (the no-op meter before Setup).

// TaskScheduled counts a stored task.
func TaskScheduled(ctx context.Context, lambda string) {
	if c := &inst().counters; c.enabled(ctx, counterScheduled) {
		c.add(ctx, counterScheduled, attrs1(KeyLambda, lambda))
	}
}

// TaskPushed counts a push to a task's queue, by reason: the store
// consumer's (due, retry and the timeouts), a task due at once (the
// frontend, a cron tick), a dead letter retried by hand, tasks a resume
// released.
func TaskPushed(ctx context.Context, lambda, reason string) {
	if c := &inst().counters; c.enabled(ctx, counterEnqueued) {
		c.add(ctx, counterEnqueued, attrs2(KeyLambda, lambda, KeyReason.String(reason)))
	}
}

// TaskClaimed records a claim's pickup latency.
func TaskClaimed(ctx context.Context, lambda string, priority int, pickup time.Duration) {
	if h := &inst().hists; h.enabled(ctx, histPickup) {
		h.record(ctx, histPickup, max(pickup, 0).Seconds(), attrs2(KeyLambda, lambda, KeyPriority.Int(priority)))
	}
}

// TaskStarted counts an execution started. late, when >= 0, is how long
// after it was due (store.Task.DueAt) the task's first attempt started
// (atf.task.start.lateness); a later attempt passes -1.
func TaskStarted(ctx context.Context, lambda string, late time.Duration) {
	in := inst()
	started, lateness := in.counters.enabled(ctx, counterStarted), late >= 0 && in.hists.enabled(ctx, histLateness)
	if !started && !lateness {
		return
	}
	attrs := attrs1(KeyLambda, lambda)
	if started {
		in.counters.add(ctx, counterStarted, attrs)
	}
	if lateness {
		in.hists.record(ctx, histLateness, late.Seconds(), attrs)
	}
}

// TaskFinished counts an execution's end and records how long it ran and,
// when known (> 0), the CPU time it used and the memory it reached.
func TaskFinished(ctx context.Context, lambda, outcome string, d, cpu time.Duration, memoryBytes uint64) {
	in := inst()
	finished, duration := in.counters.enabled(ctx, counterFinished), in.hists.enabled(ctx, histDuration)
	if finished || duration {
		attrs := attrs2(KeyLambda, lambda, KeyOutcome.String(outcome))
		if finished {
			in.counters.add(ctx, counterFinished, attrs)
		}
		if duration {
			in.hists.record(ctx, histDuration, d.Seconds(), attrs)
		}
	}
	cpuOn, memoryOn := cpu > 0 && in.hists.enabled(ctx, histCPU), memoryBytes > 0 && in.hists.enabled(ctx, histMemory)
	if cpuOn || memoryOn {
		attrs := attrs1(KeyLambda, lambda)
		if cpuOn {
			in.hists.record(ctx, histCPU, cpu.Seconds(), attrs)
		}
		if memoryOn {
			in.hists.recordMemory(ctx, int64(memoryBytes), attrs)
		}
	}
}

// HeartbeatFailed counts a failed heartbeat call.
func HeartbeatFailed(ctx context.Context) { inst().heartbeatsFailed.Add(ctx, 1) }

// ObserveRunning reports running() as atf.executor.sandboxes.running on
// every collection, until the returned function is called. Call it after
// Setup.
func ObserveRunning(running func() int) (stop func()) {
	in := inst()
	reg, err := in.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(in.runningGauge, int64(running()))
		return nil
	}, in.runningGauge)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}

// QueueDepth is one queue's length.
type QueueDepth struct {
	Namespace string
	Lambda    string
	Priority  int
	Length    int64
}

// ObserveQueueDepth reports depths(ctx) as atf.queue.depth on every
// collection (a Prometheus scrape, an OTLP export), until the returned
// function is called. depths should be one round trip (pipelined LLEN).
func ObserveQueueDepth(depths func(context.Context) ([]QueueDepth, error)) (stop func()) {
	in := inst()
	reg, err := in.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		ds, err := depths(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			o.ObserveInt64(in.queueDepth, d.Length, metric.WithAttributes(
				KeyNamespace.String(d.Namespace), KeyLambda.String(d.Lambda), KeyPriority.Int(d.Priority)))
		}
		return nil
	}, in.queueDepth)
	if err != nil {
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}

// Attribute sets of the per-task measurements, built once per distinct
// value: building a set (sorting and hashing its attributes) costs more
// than recording the measurement. Values are few (lambdas, outcomes,
// reasons, priorities); past maxCachedSets distinct ones, sets are built
// each time. A set is kept with the option slices Add and Record take, so
// that recording into it allocates nothing.
type attrSet struct {
	add []metric.AddOption
	rec []metric.RecordOption

	key    setKey
	attrs  attribute.Set
	counts atomic.Pointer[setCounts] // its sums in the counted counters (counters.go)
	hists  atomic.Pointer[setHists]  // its points in the counted histograms (histograms.go)
}

func newAttrSet(key setKey, kvs ...attribute.KeyValue) *attrSet {
	s := &attrSet{key: key, attrs: attribute.NewSet(kvs...)}
	o := metric.WithAttributeSet(s.attrs)
	s.add, s.rec = []metric.AddOption{o}, []metric.RecordOption{o}
	return s
}

// setKey is a set's attributes: a string one, and a string or int one
// (k2 empty when none). Strings and ints only, not attribute.KeyValues,
// whose interface field makes hashing them several times slower.
type setKey struct {
	k1, v1, k2, v2 string
	n2             int64
	t2             attribute.Type
}

func keyOf(k1 attribute.Key, v1 string, a2 attribute.KeyValue) setKey {
	key := setKey{k1: string(k1), v1: v1, k2: string(a2.Key), t2: a2.Value.Type()}
	if key.t2 == attribute.INT64 {
		key.n2 = a2.Value.AsInt64()
	} else {
		key.v2 = a2.Value.AsString()
	}
	return key
}

// attributes are the attributes of the set key stands for.
func (key setKey) attributes() []attribute.KeyValue {
	kvs := []attribute.KeyValue{attribute.Key(key.k1).String(key.v1)}
	switch {
	case key.k2 == "":
	case key.t2 == attribute.INT64:
		kvs = append(kvs, attribute.Key(key.k2).Int64(key.n2))
	default:
		kvs = append(kvs, attribute.Key(key.k2).String(key.v2))
	}
	return kvs
}

// sets are the cached sets. Lookups read an immutable copy without a lock
// (an RWMutex's reader count, shared by every core, cost more than the
// allocations it saved); sets not in it yet are found or added under mu,
// and a new copy is published once such lookups were frequent enough to
// pay for copying (sync.Map's scheme, without boxing the key).
var sets struct {
	read   atomic.Pointer[map[setKey]*attrSet]
	mu     sync.Mutex
	all    map[setKey]*attrSet // read's sets and newer ones
	misses int                 // lookups under mu since read was published
}

const maxCachedSets = 10000

func attrs1(k attribute.Key, v string) *attrSet {
	return cachedSet(setKey{k1: string(k), v1: v})
}

func attrs2(k1 attribute.Key, v1 string, a2 attribute.KeyValue) *attrSet {
	if t := a2.Value.Type(); t != attribute.STRING && t != attribute.INT64 {
		// Not cached (atf has none); its key tells it apart for the counted
		// counters.
		return newAttrSet(setKey{k1: string(k1), v1: v1, k2: string(a2.Key), v2: a2.Value.Emit(), t2: a2.Value.Type()}, k1.String(v1), a2)
	}
	return cachedSet(keyOf(k1, v1, a2))
}

func cachedSet(key setKey) *attrSet {
	if m := sets.read.Load(); m != nil {
		if s := (*m)[key]; s != nil {
			return s
		}
	}
	sets.mu.Lock()
	defer sets.mu.Unlock()
	s := sets.all[key]
	if s == nil {
		s = newAttrSet(key, key.attributes()...)
		if len(sets.all) >= maxCachedSets {
			return s
		}
		if sets.all == nil {
			sets.all = map[setKey]*attrSet{}
		}
		sets.all[key] = s
	}
	if sets.misses++; sets.misses > len(sets.all)/4 {
		m := maps.Clone(sets.all)
		sets.read.Store(&m)
		sets.misses = 0
	}
	return s
}
