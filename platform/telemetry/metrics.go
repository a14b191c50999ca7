package telemetry

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of atf's own spans and metrics.
const Scope = "github.com/atfhq/atf"

// Tracer is atf's tracer from the global provider Setup installs. It is
// kept while that provider stays: otel.Tracer takes the global provider's
// lock (and the SDK provider's) on every call, and every task starts
// several spans from goroutines running at once.
func Tracer() trace.Tracer {
	tp := otel.GetTracerProvider()
	if c := tracer.Load(); c != nil && reflect.TypeOf(tp).Comparable() && c.tp == tp {
		return c.t
	}
	t := tp.Tracer(Scope)
	tracer.Store(&providerTracer{tp: tp, t: t})
	return t
}

// providerTracer is a tracer with the provider it came from.
type providerTracer struct {
	tp trace.TracerProvider
	t  trace.Tracer
}

var tracer atomic.Pointer[providerTracer]

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

// secondsBuckets suit latencies from a millisecond to minutes.
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// instruments are atf's metrics. Setup binds a new set to the provider it
// installs; until then they record into a no-op meter.
type instruments struct {
	meter            metric.Meter
	tasksScheduled   metric.Int64Counter
	tasksStarted     metric.Int64Counter
	tasksFinished    metric.Int64Counter
	tasksEnqueued    metric.Int64Counter
	pickupLatency    metric.Float64Histogram
	lateness         metric.Float64Histogram
	execDuration     metric.Float64Histogram
	execCPU          metric.Float64Histogram
	sandboxMemory    metric.Int64Histogram
	heartbeatsFailed metric.Int64Counter
	runningGauge     metric.Int64ObservableUpDownCounter
	queueDepth       metric.Int64ObservableGauge
}

var current atomic.Pointer[instruments]

func init() { current.Store(newInstruments(noop.NewMeterProvider().Meter(Scope))) }

func inst() *instruments { return current.Load() }

func newInstruments(meter metric.Meter) *instruments {
	return &instruments{
		meter: meter,
		tasksScheduled: must(meter.Int64Counter("atf.tasks.scheduled", metric.WithUnit("{task}"),
			metric.WithDescription("Tasks stored by Schedule (deduplicated ones not counted)."))),
		tasksStarted: must(meter.Int64Counter("atf.tasks.started", metric.WithUnit("{task}"),
			metric.WithDescription("Executions started by executors (one per attempt)."))),
		tasksFinished: must(meter.Int64Counter("atf.tasks.finished", metric.WithUnit("{task}"),
			metric.WithDescription("Executions finished, by outcome (success, retry, fatal, cancelled, aborted)."))),
		tasksEnqueued: must(meter.Int64Counter("atf.tasks.enqueued", metric.WithUnit("{task}"),
			metric.WithDescription("Tasks pushed to their queue, by reason: due (by the store consumer, or at once when scheduled due), retry, manual_retry, resume, and the re-enqueues enqueue_timeout, claim_timeout, heartbeat_timeout."))),
		pickupLatency: must(meter.Float64Histogram("atf.task.pickup.latency", metric.WithUnit("s"),
			metric.WithDescription("From when a task was due (execute_at, its creation when scheduled for a time past, a RetryTask or resume if later; on later attempts its re-enqueue) to its claim by a controller; 0 for a task claimed within the dispatch lead, ahead of its time."),
			metric.WithExplicitBucketBoundaries(secondsBuckets...))),
		lateness: must(meter.Float64Histogram("atf.task.start.lateness", metric.WithUnit("s"),
			metric.WithDescription("How long after it was due (execute_at, its creation when scheduled for a time past, a RetryTask or resume if later) a task's first attempt started in a sandbox (never before it)."),
			metric.WithExplicitBucketBoundaries(secondsBuckets...))),
		execDuration: must(meter.Float64Histogram("atf.task.execution.duration", metric.WithUnit("s"),
			metric.WithDescription("Time a sandbox ran a task (instantiate and run), by lambda and outcome."),
			metric.WithExplicitBucketBoundaries(secondsBuckets...))),
		execCPU: must(meter.Float64Histogram("atf.task.cpu.time", metric.WithUnit("s"),
			metric.WithDescription("CPU time of the executor thread that ran a task (its module's compilation included when it was not cached), by lambda."),
			metric.WithExplicitBucketBoundaries(secondsBuckets...))),
		sandboxMemory: must(meter.Int64Histogram("atf.sandbox.memory.peak", metric.WithUnit("By"),
			metric.WithDescription("Largest linear memory a task's module instance reached."),
			metric.WithExplicitBucketBoundaries(1<<20, 2<<20, 4<<20, 8<<20, 16<<20, 32<<20, 64<<20, 128<<20, 256<<20, 512<<20, 1<<30, 2<<30, 4<<30))),
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

// TaskScheduled counts a stored task.
func TaskScheduled(ctx context.Context, lambda string) {
	inst().tasksScheduled.Add(ctx, 1, attrs1(KeyLambda, lambda))
}

// TaskPushed counts a push to a task's queue, by reason: the store
// consumer's (due, retry and the timeouts), a task due at once (the
// frontend, a cron tick), a dead letter retried by hand, tasks a resume
// released.
func TaskPushed(ctx context.Context, lambda, reason string) {
	inst().tasksEnqueued.Add(ctx, 1, attrs2(KeyLambda, lambda, KeyReason.String(reason)))
}

// TaskClaimed records a claim's pickup latency.
func TaskClaimed(ctx context.Context, lambda string, priority int, pickup time.Duration) {
	inst().pickupLatency.Record(ctx, max(pickup, 0).Seconds(), attrs2(KeyLambda, lambda, KeyPriority.Int(priority)))
}

// TaskStarted counts an execution started. late, when >= 0, is how long
// after it was due (store.Task.DueAt) the task's first attempt started
// (atf.task.start.lateness); a later attempt passes -1.
func TaskStarted(ctx context.Context, lambda string, late time.Duration) {
	attrs := attrs1(KeyLambda, lambda)
	inst().tasksStarted.Add(ctx, 1, attrs)
	if late >= 0 {
		inst().lateness.Record(ctx, late.Seconds(), attrs)
	}
}

// TaskFinished counts an execution's end and records how long it ran and,
// when known (> 0), the CPU time it used and the memory it reached.
func TaskFinished(ctx context.Context, lambda, outcome string, d, cpu time.Duration, memoryBytes uint64) {
	attrs := attrs2(KeyLambda, lambda, KeyOutcome.String(outcome))
	inst().tasksFinished.Add(ctx, 1, attrs)
	inst().execDuration.Record(ctx, d.Seconds(), attrs)
	if cpu > 0 {
		inst().execCPU.Record(ctx, cpu.Seconds(), attrs1(KeyLambda, lambda))
	}
	if memoryBytes > 0 {
		inst().sandboxMemory.Record(ctx, int64(memoryBytes), attrs1(KeyLambda, lambda))
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
// each time.
var (
	cachedSets sync.Map // string -> metric.MeasurementOption
	numSets    atomic.Int64
)

const maxCachedSets = 10000

func attrs1(k attribute.Key, v string) metric.MeasurementOption {
	return cachedSet(string(k)+"\x00"+v, func() metric.MeasurementOption {
		return metric.WithAttributes(k.String(v))
	})
}

func attrs2(k1 attribute.Key, v1 string, a2 attribute.KeyValue) metric.MeasurementOption {
	return cachedSet(string(k1)+"\x00"+v1+"\x00"+string(a2.Key)+"\x00"+a2.Value.Emit(), func() metric.MeasurementOption {
		return metric.WithAttributes(k1.String(v1), a2)
	})
}

func cachedSet(key string, build func() metric.MeasurementOption) metric.MeasurementOption {
	if o, ok := cachedSets.Load(key); ok {
		return o.(metric.MeasurementOption)
	}
	o := build()
	if numSets.Load() < maxCachedSets {
		if _, loaded := cachedSets.LoadOrStore(key, o); !loaded {
			numSets.Add(1)
		}
	}
	return o
}
