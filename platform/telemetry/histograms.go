package telemetry

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// atf's per-task histograms, indexes into taskHistograms, countedHists
// and setHists. All but atf.sandbox.memory.peak measure seconds.
const (
	histPickup   = iota // atf.task.pickup.latency
	histLateness        // atf.task.start.lateness
	histDuration        // atf.task.execution.duration
	histCPU             // atf.task.cpu.time
	histMemory          // atf.sandbox.memory.peak
	numHists
	numSecondsHists = histMemory
)

type histDef struct {
	name, unit, description string
	bounds                  []float64
}

var histDefs = [numHists]histDef{
	histPickup: {"atf.task.pickup.latency", "s",
		"From when a task was due (execute_at, its creation when scheduled for a time past, a RetryTask or resume if later; on later attempts its re-enqueue) to its claim by a controller; 0 for a task claimed within the dispatch lead, ahead of its time.",
		secondsBuckets},
	histLateness: {"atf.task.start.lateness", "s",
		"How long after it was due (execute_at, its creation when scheduled for a time past, a RetryTask or resume if later) a task's first attempt started in a sandbox (never before it).",
		secondsBuckets},
	histDuration: {"atf.task.execution.duration", "s",
		"Time a sandbox ran a task (instantiate and run), by lambda and outcome.",
		secondsBuckets},
	histCPU:    {"atf.task.cpu.time", "s", cpuTimeDescription, secondsBuckets},
	histMemory: {"atf.sandbox.memory.peak", "By", "Largest linear memory a task's module instance reached.", memoryBuckets},
}

// memoryBuckets suit linear memories from a MiB to 4 GiB.
var memoryBuckets = []float64{1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20, 128 << 20, 256 << 20, 512 << 20, 1 << 30, 2 << 30, 4 << 30}

// taskHistograms are the per-task histograms. With exemplars off and every
// reader Setup makes taking its histProducer (Setup decides), atf keeps
// them itself, as it keeps the per-task counters: a measurement locks its
// attribute set's point, found from the set without a lookup, and adds to
// a bucket, the sum, min and max; histProducer reports the points at each
// collection as the SDK's cumulative explicit-bucket histograms would be
// reported (names, units, descriptions, boundaries, scope, attribute
// sets, cardinality limit). The SDK's Record cost ~0.3 µs of CPU each (it
// normalizes the attribute set and looks it up on every call), four or
// five per task. Otherwise they are the SDK's histograms.
type taskHistograms struct {
	seconds [numSecondsHists]metric.Float64Histogram // the SDK's; nil when counted
	memory  metric.Int64Histogram
	counted *countedHists // nil: the SDK's histograms
}

func newTaskHistograms(meter metric.Meter, counted *countedHists) taskHistograms {
	if counted != nil {
		return taskHistograms{counted: counted}
	}
	var th taskHistograms
	for i := range th.seconds {
		d := &histDefs[i]
		th.seconds[i] = must(meter.Float64Histogram(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.description),
			metric.WithExplicitBucketBoundaries(d.bounds...)))
	}
	d := &histDefs[histMemory]
	th.memory = must(meter.Int64Histogram(d.name, metric.WithUnit(d.unit), metric.WithDescription(d.description),
		metric.WithExplicitBucketBoundaries(d.bounds...)))
	return th
}

// enabled reports whether histogram i records: always when counted, else
// when the SDK's histogram is enabled (not so for the no-op meter).
func (th *taskHistograms) enabled(ctx context.Context, i int) bool {
	if th.counted != nil {
		return true
	}
	if i == histMemory {
		return th.memory.Enabled(ctx)
	}
	return th.seconds[i].Enabled(ctx)
}

// record records v seconds in histogram i (not histMemory) for set.
func (th *taskHistograms) record(ctx context.Context, i int, v float64, set *attrSet) {
	if th.counted == nil {
		th.seconds[i].Record(ctx, v, set.rec...)
		return
	}
	ch := th.counted
	pointOf(ch, &ch.seconds[i], &ch.of(set).seconds[i], set.attrs).record(v)
}

// recordMemory records bytes in atf.sandbox.memory.peak for set.
func (th *taskHistograms) recordMemory(ctx context.Context, bytes int64, set *attrSet) {
	if th.counted == nil {
		th.memory.Record(ctx, bytes, set.rec...)
		return
	}
	ch := th.counted
	pointOf(ch, &ch.memory, &ch.of(set).memory, set.attrs).record(bytes)
}

// countedHists are the counted histograms' points.
type countedHists struct {
	start   time.Time // the streams' start, unless per series: the SDK's is when it made the instrument
	limit   int       // streams per histogram, the overflow's included (the SDK's cardinality limit); <= 0: none
	seconds [numSecondsHists]countedHist[float64]
	memory  countedHist[int64]

	mu    sync.Mutex // the countedHist's streams, byKey
	byKey map[setKey]*setHists
}

// countedHist is one histogram's points.
type countedHist[N int64 | float64] struct {
	def    *histDef
	bounds []float64 // sorted

	// Under countedHists.mu.
	streams  int             // points, the overflow's included
	overflow *histPoint[N]   // past limit-1 streams, new sets' measurements go to it
	order    []*histPoint[N] // in the order of their first measurement
}

func newCountedHists(limit int) *countedHists {
	ch := &countedHists{start: time.Now(), limit: limit, byKey: map[setKey]*setHists{}}
	for i := range ch.seconds {
		ch.seconds[i] = countedHist[float64]{def: &histDefs[i], bounds: sortedBounds(histDefs[i].bounds)}
	}
	ch.memory = countedHist[int64]{def: &histDefs[histMemory], bounds: sortedBounds(histDefs[histMemory].bounds)}
	return ch
}

func sortedBounds(b []float64) []float64 {
	b = slices.Clone(b)
	slices.Sort(b)
	return b
}

// setHists are one attribute set's points, nil until measured.
type setHists struct {
	owner   *countedHists
	seconds [numSecondsHists]atomic.Pointer[histPoint[float64]]
	memory  atomic.Pointer[histPoint[int64]]
}

// of returns set's points: the ones set points at when they are ch's (no
// lock), else found or made under ch.mu, by the set's key (a set built
// anew each time, past maxCachedSets, finds its points there).
func (ch *countedHists) of(set *attrSet) *setHists {
	if h := set.hists.Load(); h != nil && h.owner == ch {
		return h
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	h := ch.byKey[set.key]
	if h == nil {
		h = &setHists{owner: ch}
		ch.byKey[set.key] = h
	}
	set.hists.Store(h)
	return h
}

// overflowSet is the SDK's attribute set of the measurements past the
// cardinality limit.
var overflowSet = attribute.NewSet(attribute.Bool("otel.metric.overflow", true))

// pointOf returns the point of h in slot, a set's, made on the set's first
// measurement: its own, or past the cardinality limit the overflow's, as
// the SDK's aggregation chooses.
func pointOf[N int64 | float64](ch *countedHists, h *countedHist[N], slot *atomic.Pointer[histPoint[N]], attrs attribute.Set) *histPoint[N] {
	if p := slot.Load(); p != nil {
		return p
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	p := slot.Load()
	switch {
	case p != nil:
	case ch.limit > 0 && h.streams >= ch.limit-1:
		if h.overflow == nil {
			h.overflow = h.newPoint(overflowSet)
		}
		p = h.overflow
	default:
		p = h.newPoint(attrs)
	}
	slot.Store(p)
	return p
}

func (h *countedHist[N]) newPoint(attrs attribute.Set) *histPoint[N] {
	p := &histPoint[N]{attrs: attrs, start: time.Now(), bounds: h.bounds, counts: make([]uint64, len(h.bounds)+1)}
	h.streams++
	h.order = append(h.order, p)
	return p
}

// histPoint is one stream: an attribute set's measurements. A lock, not
// the SDK's atomics (hot and cold counters, a compare-and-swap loop per
// float sum): uncontended it costs less, and a collection reads a
// consistent point.
type histPoint[N int64 | float64] struct {
	attrs  attribute.Set
	start  time.Time // its first measurement's
	bounds []float64

	mu       sync.Mutex
	count    uint64
	counts   []uint64 // counts[i]: values in (bounds[i-1], bounds[i]]
	sumInt   int64    // the whole values' sum, and the others': as the SDK
	sumFloat float64  // adds them, so that whole sums are exact
	min, max N
}

func (p *histPoint[N]) record(v N) {
	i := bucket(p.bounds, float64(v))
	p.mu.Lock()
	if p.count == 0 || v < p.min {
		p.min = v
	}
	if p.count == 0 || v > p.max {
		p.max = v
	}
	p.count++
	p.counts[i]++
	if n := int64(v); float64(n) == float64(v) {
		p.sumInt += n
	} else {
		p.sumFloat += float64(v)
	}
	p.mu.Unlock()
}

// bucket is the index of v's bucket: of the first bound >= v, len(bounds)
// past the last (and for NaN), as the SDK's sort.SearchFloat64s; written
// out, that search's closure cost a tenth of a measurement.
func bucket(bounds []float64, v float64) int {
	i, j := 0, len(bounds)
	for i < j {
		h := int(uint(i+j) >> 1)
		if !(bounds[h] >= v) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

// histProducer is the sdkmetric.Producer Setup gives every reader it
// makes: it reports the counted histograms, once Setup made them, at each
// collection.
type histProducer struct {
	hists    atomic.Pointer[countedHists] // nil: nothing to report (the SDK's histograms)
	attached atomic.Bool                  // autoexport's reader took it
}

// Produce reports the histograms measured at least once, under atf's
// scope, as the SDK reports its own. A reader appends them as a scope of
// their own after the SDK's: OTLP carries atf's scope twice (the counters
// in one, the histograms in the other), which receivers take as one;
// Prometheus labels both the same. The SDK's float sums add the values
// in the order they came, as these do; but a collection folds the sum so
// far into one value that later ones add to, so that theirs may differ
// from these in the last bits once collected (as theirs differ between
// readers collecting at other times).
func (hp *histProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	ch := hp.hists.Load()
	if ch == nil {
		return nil, nil
	}
	var orders [numSecondsHists][]*histPoint[float64]
	ch.mu.Lock()
	for i := range ch.seconds {
		orders[i] = ch.seconds[i].order[:len(ch.seconds[i].order):len(ch.seconds[i].order)]
	}
	memory := ch.memory.order[:len(ch.memory.order):len(ch.memory.order)]
	ch.mu.Unlock()

	now := time.Now()
	start := ch.start
	perSeries := strings.EqualFold(os.Getenv("OTEL_GO_X_PER_SERIES_START_TIMESTAMPS"), "true") // as the SDK reads it, at each collection
	var ms []metricdata.Metrics
	for i, order := range orders {
		if m, ok := collect(&ch.seconds[i], order, start, now, perSeries); ok {
			ms = append(ms, m)
		}
	}
	if m, ok := collect(&ch.memory, memory, start, now, perSeries); ok {
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, nil
	}
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: Scope}, Metrics: ms}}, nil
}

func collect[N int64 | float64](h *countedHist[N], order []*histPoint[N], start, now time.Time, perSeries bool) (metricdata.Metrics, bool) {
	bounds := slices.Clone(h.bounds)
	dps := make([]metricdata.HistogramDataPoint[N], 0, len(order))
	for _, p := range order {
		dp := metricdata.HistogramDataPoint[N]{Attributes: p.attrs, StartTime: start, Time: now, Bounds: bounds}
		if perSeries {
			dp.StartTime = p.start
		}
		p.mu.Lock()
		dp.Count = p.count
		dp.BucketCounts = slices.Clone(p.counts)
		if _, ok := any(dp.Sum).(int64); ok {
			dp.Sum = N(p.sumInt)
		} else {
			dp.Sum = N(p.sumFloat + float64(p.sumInt))
		}
		lo, hi := p.min, p.max
		p.mu.Unlock()
		if dp.Count == 0 { // made, its first measurement not added yet
			continue
		}
		dp.Min, dp.Max = metricdata.NewExtrema(lo), metricdata.NewExtrema(hi)
		dps = append(dps, dp)
	}
	if len(dps) == 0 {
		return metricdata.Metrics{}, false
	}
	return metricdata.Metrics{
		Name: h.def.name, Description: h.def.description, Unit: h.def.unit,
		Data: metricdata.Histogram[N]{DataPoints: dps, Temporality: metricdata.CumulativeTemporality},
	}, true
}

// producerKey is the context key of the histProducer Setup passes to
// autoexport.NewMetricReader.
type producerKey struct{}

// autoexport gives the readers it makes (OTLP, console, its own Prometheus
// server) the producers OTEL_METRICS_PRODUCERS names, or when it names
// none its fallback producer: this one, which hands them the histProducer
// of Setup's context (and marks it attached). With producers named, Setup
// finds its own unattached and keeps the SDK's histograms.
func init() {
	autoexport.WithFallbackMetricProducer(func(ctx context.Context) (sdkmetric.Producer, error) {
		hp, _ := ctx.Value(producerKey{}).(*histProducer)
		if hp == nil { // a reader made by anything but Setup
			return noProducer{}, nil
		}
		hp.attached.Store(true)
		return hp, nil
	})
}

type noProducer struct{}

func (noProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) { return nil, nil }

// otlpHistogramsAsCounted reports whether the OTLP exporter autoexport
// makes exports histograms as histProducer reports them: cumulative
// (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE not delta or
// lowmemory, whose histograms are delta) with explicit buckets
// (OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION not
// base2_exponential_bucket_histogram). A producer's data is exported as
// it comes, whatever the exporter's preference. The exporter reads these
// with os.Getenv, as this does; the console exporter has neither.
func otlpHistogramsAsCounted() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"))) {
	case "delta", "lowmemory":
		return false
	}
	return !strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION")), "base2_exponential_bucket_histogram")
}

// cardinalityLimit is the meter provider's cardinality limit: the SDK's
// default or OTEL_GO_X_CARDINALITY_LIMIT, read as the SDK reads it. Setup
// passes it to the provider, so that the counted histograms and the SDK's
// instruments overflow at the same number of streams.
func cardinalityLimit() int {
	const defaultLimit = 2000 // sdk/metric's defaultCardinalityLimit
	v := strings.TrimSpace(os.Getenv("OTEL_GO_X_CARDINALITY_LIMIT"))
	if v == "" {
		return defaultLimit
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return defaultLimit // the SDK reports the error
	}
	return n
}
