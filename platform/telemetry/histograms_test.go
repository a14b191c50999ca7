package telemetry

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// recordHistograms records the per-task histograms: concurrently, then
// values on bucket bounds, whole seconds, past the last bound, and the
// measurements the record functions skip.
func recordHistograms() {
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 250 {
				TaskClaimed(ctx, "hello", 0, 3*time.Millisecond)
				TaskStarted(ctx, "hello", 7*time.Millisecond)
				TaskFinished(ctx, "hello", "success", 20*time.Millisecond, 15*time.Millisecond, 3<<20)
			}
		})
	}
	wg.Wait()
	TaskClaimed(ctx, "hello", 2, -time.Second) // 0
	TaskClaimed(ctx, "hello", 2, 5*time.Millisecond)
	TaskStarted(ctx, "other", 2*time.Second)
	TaskStarted(ctx, "other", 1234567*time.Microsecond)
	TaskStarted(ctx, "other", -1)
	TaskFinished(ctx, "hello", "fatal", 11*time.Minute, 0, 0)
	TaskFinished(ctx, "other", "success", time.Second, 2500*time.Millisecond, 1<<20)
	TaskFinished(ctx, "other", "retry", 333*time.Millisecond, time.Millisecond, 5<<30)
}

var histogramNames = []string{"atf_task_pickup_latency", "atf_task_start_lateness", "atf_task_execution_duration", "atf_task_cpu_time", "atf_sandbox_memory_peak"}

// TestCountedHistograms: with exemplars off (tracing off, the default) atf
// keeps the per-task histograms itself, with them on the SDK does;
// /metrics shows the same series (buckets, sums, counts), help and types
// either way.
func TestCountedHistograms(t *testing.T) {
	scrape := func(t *testing.T, getenv func(string) string, wantCounted bool) []string {
		t.Helper()
		tel := mustSetup(t, getenv)
		defer tel.Close(context.Background())
		if counted := inst().hists.counted != nil; counted != wantCounted {
			t.Fatalf("counted = %v, want %v", counted, wantCounted)
		}
		recordHistograms()
		rec := httptest.NewRecorder()
		tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		var lines []string
		for l := range strings.Lines(rec.Body.String()) {
			if slices.ContainsFunc(histogramNames, func(n string) bool { return strings.Contains(l, n) }) {
				lines = append(lines, l)
			}
		}
		return lines
	}
	counted := scrape(t, env(), true)
	sdk := scrape(t, env("OTEL_METRICS_EXEMPLAR_FILTER", "always_on"), false)
	const scope = `otel_scope_name="github.com/atfhq/atf",otel_scope_schema_url="",otel_scope_version=""`
	for _, want := range []string{
		"# HELP atf_task_cpu_time_seconds " + cpuTimeDescription + "\n",
		"# TYPE atf_sandbox_memory_peak_bytes histogram\n",
		`atf_task_pickup_latency_seconds_bucket{atf_lambda_name="hello",atf_task_priority="2",` + scope + `,le="0.001"} 1` + "\n",
		`atf_task_pickup_latency_seconds_bucket{atf_lambda_name="hello",atf_task_priority="2",` + scope + `,le="0.005"} 2` + "\n",
		`atf_task_start_lateness_seconds_count{atf_lambda_name="hello",` + scope + `} 1000` + "\n",
		`atf_task_start_lateness_seconds_sum{atf_lambda_name="other",` + scope + `} 3.234567` + "\n",
		`atf_task_execution_duration_seconds_bucket{atf_lambda_name="hello",atf_task_outcome="fatal",` + scope + `,le="600"} 0` + "\n",
		`atf_task_execution_duration_seconds_bucket{atf_lambda_name="hello",atf_task_outcome="fatal",` + scope + `,le="+Inf"} 1` + "\n",
		`atf_sandbox_memory_peak_bytes_bucket{atf_lambda_name="other",` + scope + `,le="1.048576e+06"} 1` + "\n",
		`atf_sandbox_memory_peak_bytes_sum{atf_lambda_name="other",` + scope + `} 5.369757696e+09` + "\n",
	} {
		if !slices.Contains(counted, want) {
			t.Errorf("counted: no %s", want)
		}
	}
	if !slices.Equal(counted, sdk) {
		t.Errorf("counted:\n%s\nSDK's:\n%s", strings.Join(counted, ""), strings.Join(sdk, ""))
	}
}

// TestCountedHistogramsCollected: a reader with the producer collects the
// histograms the SDK's would (counts, sums, buckets, min and max, scope,
// attribute sets), collection after collection, past the cardinality
// limit too.
func TestCountedHistogramsCollected(t *testing.T) {
	saved := current.Load()
	defer current.Store(saved)
	const limit = 4
	collect := func(counted bool) (rounds [2]metricdata.ScopeMetrics) {
		opts := []sdkmetric.Option{sdkmetric.WithCardinalityLimit(limit)}
		var hists *countedHists
		var r *sdkmetric.ManualReader
		if counted {
			hp := &histProducer{}
			hists = newCountedHists(limit)
			hp.hists.Store(hists)
			r = sdkmetric.NewManualReader(sdkmetric.WithProducer(hp))
			opts = append(opts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
		} else {
			r = sdkmetric.NewManualReader()
		}
		mp := sdkmetric.NewMeterProvider(append(opts, sdkmetric.WithReader(r))...)
		defer mp.Shutdown(context.Background())
		current.Store(newInstruments(mp.Meter(Scope), counted, hists))
		ctx := context.Background()
		for round := range rounds {
			// Whole and binary fractions of seconds: the same sums whatever
			// the order of additions (the SDK's fold at each collection).
			for i := range 6 { // lambdas past the limit overflow
				lambda := string(rune('a' + i))
				TaskClaimed(ctx, lambda, round, time.Duration(i)*125*time.Millisecond)
				TaskStarted(ctx, lambda, time.Duration(i+round)*time.Second)
				TaskFinished(ctx, lambda, "success", 500*time.Millisecond, 250*time.Millisecond, uint64(i+1)<<20)
			}
			TaskFinished(ctx, "a", "retry", 700*time.Second, 1500*time.Millisecond, 5<<30)
			var rm metricdata.ResourceMetrics
			if err := r.Collect(ctx, &rm); err != nil {
				t.Fatal(err)
			}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if _, ok := m.Data.(metricdata.Sum[int64]); ok {
						continue
					}
					rounds[round].Scope = sm.Scope
					rounds[round].Metrics = append(rounds[round].Metrics, m)
				}
			}
		}
		return rounds
	}
	counted, sdk := collect(true), collect(false)
	for round := range counted {
		if n := len(sdk[round].Metrics); n != numHists {
			t.Fatalf("round %d: the SDK collected %d histograms, want %d", round, n, numHists)
		}
		slices.SortFunc(counted[round].Metrics, func(a, b metricdata.Metrics) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(sdk[round].Metrics, func(a, b metricdata.Metrics) int { return strings.Compare(a.Name, b.Name) })
		metricdatatest.AssertEqual(t, sdk[round], counted[round], metricdatatest.IgnoreTimestamp())
	}
	// The fourth lambda's and later sets overflow.
	for _, m := range counted[1].Metrics {
		if m.Name != "atf.task.start.lateness" {
			continue
		}
		dps := m.Data.(metricdata.Histogram[float64]).DataPoints
		if len(dps) != limit || !dps[limit-1].Attributes.Equals(&overflowSet) || dps[limit-1].Count != 6 {
			t.Errorf("lateness points %v, want %d with the overflow's last, of 6", dps, limit)
		}
	}
}

// TestCountedHistogramsOTLP: Setup's OTLP exporter (autoexport's) sends
// the histograms the SDK's would.
func TestCountedHistogramsOTLP(t *testing.T) {
	export := func(t *testing.T, wantCounted bool, kv ...string) map[string]*metricpb.Metric {
		t.Helper()
		var mu sync.Mutex
		var bodies [][]byte
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, body)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		defer srv.Close()
		kv = append(kv, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", srv.URL+"/v1/metrics", "OTEL_METRIC_EXPORT_INTERVAL", "3600000")
		for i := 0; i+1 < len(kv); i += 2 {
			t.Setenv(kv[i], kv[i+1]) // autoexport and the SDK read os.Getenv
		}
		tel := mustSetup(t, env(kv...))
		if !tel.OTLPMetrics {
			t.Fatal("no OTLP metrics")
		}
		if counted := inst().hists.counted != nil; counted != wantCounted {
			t.Fatalf("counted = %v, want %v", counted, wantCounted)
		}
		recordHistograms()
		if err := tel.Close(context.Background()); err != nil { // exports
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		got := map[string]*metricpb.Metric{}
		for _, body := range bodies {
			var req colmetricpb.ExportMetricsServiceRequest
			if err := proto.Unmarshal(body, &req); err != nil {
				t.Fatal(err)
			}
			for _, rm := range req.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						h := m.GetHistogram()
						if h == nil {
							continue
						}
						if sm.Scope.GetName() != Scope || sm.Scope.GetVersion() != "" || sm.SchemaUrl != "" {
							t.Errorf("%s: scope %v %q", m.Name, sm.Scope, sm.SchemaUrl)
						}
						for _, dp := range h.DataPoints {
							dp.StartTimeUnixNano, dp.TimeUnixNano, dp.Exemplars = 0, 0, nil
						}
						slices.SortFunc(h.DataPoints, func(a, b *metricpb.HistogramDataPoint) int {
							return strings.Compare(attrsKey(a), attrsKey(b))
						})
						got[m.Name] = m
					}
				}
			}
		}
		return got
	}
	counted := export(t, true)
	sdk := export(t, false, "OTEL_METRICS_EXEMPLAR_FILTER", "always_on")
	if len(sdk) != numHists {
		t.Fatalf("the SDK exported %d histograms, want %d", len(sdk), numHists)
	}
	for name, m := range sdk {
		if !proto.Equal(m, counted[name]) {
			t.Errorf("%s: counted\n%v\nSDK's\n%v", name, counted[name], m)
		}
	}
	dps := counted["atf.task.execution.duration"].GetHistogram().GetDataPoints()
	if i := slices.IndexFunc(dps, func(dp *metricpb.HistogramDataPoint) bool {
		return dp.GetCount() == 1000 && dp.GetMin() == 0.02 && dp.GetMax() == 0.02
	}); i < 0 {
		t.Errorf("no point of 1000 measurements of 20 ms: %v", dps)
	}
}

func attrsKey(dp *metricpb.HistogramDataPoint) string {
	var b strings.Builder
	for _, kv := range dp.Attributes {
		b.WriteString(kv.String())
	}
	return b.String()
}

// TestHistogramsFallBack: where a reader would not report the counted
// histograms as the SDK's (OTEL_METRICS_PRODUCERS names the producers
// autoexport gives its reader; the OTLP exporter asks for delta or
// exponential histograms), they are the SDK's; the counters stay
// counted.
func TestHistogramsFallBack(t *testing.T) {
	for _, kv := range [][]string{
		{"OTEL_METRICS_PRODUCERS", "none"},
		{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"},
		{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", " LowMemory"},
		{"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "base2_exponential_bucket_histogram"},
	} {
		t.Run(kv[0]+"="+kv[1], func(t *testing.T) {
			kv := append(kv, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:1/v1/metrics")
			for i := 0; i+1 < len(kv); i += 2 {
				t.Setenv(kv[i], kv[i+1])
			}
			tel := mustSetup(t, env(kv...))
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
				defer cancel()
				tel.Close(ctx) // nothing listens
			}()
			if !tel.OTLPMetrics || inst().hists.counted != nil || inst().counters.counted == nil {
				t.Errorf("OTLP %v, counted histograms %v, counters %v; want OTLP, the SDK's histograms, counted counters",
					tel.OTLPMetrics, inst().hists.counted != nil, inst().counters.counted != nil)
			}
		})
	}
}

// Points are kept per set key: a set built anew for every measurement
// (past maxCachedSets) records into one point.
func TestCountedHistogramsByKey(t *testing.T) {
	ch := newCountedHists(0)
	key := setKey{k1: string(KeyLambda), v1: "uncached"}
	for range 3 {
		set := newAttrSet(key, key.attributes()...)
		pointOf(ch, &ch.seconds[histCPU], &ch.of(set).seconds[histCPU], set.attrs).record(1)
	}
	if order := ch.seconds[histCPU].order; len(order) != 1 || order[0].count != 3 {
		t.Errorf("%d points; want one of 3", len(order))
	}
}

// TestCountedHistogramsAllocateNothing: once a set has its points,
// recording into them allocates nothing.
func TestCountedHistogramsAllocateNothing(t *testing.T) {
	tel := mustSetup(t, env())
	defer tel.Close(context.Background())
	if inst().hists.counted == nil {
		t.Fatal("the SDK's histograms")
	}
	record := func() {
		TaskClaimed(context.Background(), "hello", 3, time.Millisecond)
		TaskStarted(context.Background(), "hello", time.Millisecond)
		TaskFinished(context.Background(), "hello", "success", time.Millisecond, time.Millisecond, 1<<20)
	}
	record()
	if allocs := testing.AllocsPerRun(100, record); allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}

// TestBucket: bucket finds the SDK's bucket (sort.SearchFloat64s).
func TestBucket(t *testing.T) {
	for _, v := range []float64{math.Inf(-1), -1, 0, 0.001, 0.0011, 0.005, 1, 599, 600, 601, math.Inf(1), math.NaN()} {
		if got, want := bucket(secondsBuckets, v), sort.SearchFloat64s(secondsBuckets, v); got != want {
			t.Errorf("bucket(%v) = %d, want %d", v, got, want)
		}
	}
}

// BenchmarkTaskStartedFinished: what an executor records per task —
// atf.tasks.started and finished, and the lateness, execution duration,
// CPU time and memory histograms — with Setup's meter provider and
// default environment, from one goroutine.
func BenchmarkTaskStartedFinished(b *testing.B) {
	tel := mustSetup(b, env())
	defer tel.Close(context.Background())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		TaskStarted(ctx, "hello", 3*time.Millisecond)
		TaskFinished(ctx, "hello", "success", 20*time.Millisecond, 15*time.Millisecond, 2<<20)
	}
}
