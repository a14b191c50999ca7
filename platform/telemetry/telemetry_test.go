package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestSetupExportsNothingByDefault(t *testing.T) {
	for _, c := range []struct {
		name    string
		getenv  func(string) string
		tracing bool
	}{
		{"nothing set", env(), false},
		{"exporter none", env("OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"), false},
		{"sdk disabled", env("OTEL_SDK_DISABLED", "true", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"), false},
		{"endpoint set", env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"), true},
		{"console", env("OTEL_TRACES_EXPORTER", "console"), true}, // autoexport reads it too: t.Setenv below
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"} {
				t.Setenv(k, c.getenv(k))
			}
			tel := mustSetup(t, c.getenv)
			if tel.Tracing != c.tracing {
				t.Errorf("Tracing = %v, want %v", tel.Tracing, c.tracing)
			}
			_, span := Tracer().Start(context.Background(), "x")
			if span.IsRecording() != c.tracing {
				t.Errorf("span recording = %v, want %v", span.IsRecording(), c.tracing)
			}
			span.End()
			tel.Close(context.Background())
		})
	}
}

func TestMetricsEndpoint(t *testing.T) {
	tel := mustSetup(t, env())
	defer tel.Close(context.Background())
	TaskScheduled(context.Background(), "hello")
	TaskPushed(context.Background(), "hello", ReasonResume)
	TaskFinished(context.Background(), "hello", "success", 0, time.Millisecond, 1<<20)
	stop := ObserveRunning(func() int { return 3 })
	defer stop()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`atf_tasks_scheduled_total{atf_lambda_name="hello"`,
		`atf_tasks_enqueued_total{atf_enqueue_reason="resume",atf_lambda_name="hello"`,
		`atf_tasks_finished_total{atf_lambda_name="hello",atf_task_outcome="success"`,
		`atf_task_execution_duration_seconds_bucket`,
		`atf_sandbox_memory_peak_bytes_bucket`,
		`atf_task_cpu_time_seconds_bucket{atf_lambda_name="hello"`,
		"# HELP atf_task_cpu_time_seconds " + cpuTimeDescription + "\n",
		`atf_executor_sandboxes_running`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestSamplerDropsRedisAndPollingRoots(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(Sampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))))
	tr := tp.Tracer("t")
	redis := trace.WithAttributes(attribute.String("db.system", "redis"))
	_, s := tr.Start(context.Background(), "evalsha", redis)
	s.End()
	_, s = tr.Start(context.Background(), "atf.v1.ControllerService/NextWork")
	s.End()
	ctx, parent := tr.Start(context.Background(), "atf.schedule")
	_, s = tr.Start(ctx, "evalsha", redis)
	s.End()
	parent.End()
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if got := strings.Join(names, ","); got != "evalsha,atf.schedule" {
		t.Errorf("recorded %s, want the Redis span under atf.schedule and atf.schedule", got)
	}
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("task", "t1")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0xf0, 2}, TraceFlags: trace.FlagsSampled,
	})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "started")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if !strings.Contains(lines[0], "trace_id="+sc.TraceID().String()) || !strings.Contains(lines[0], "span_id="+sc.SpanID().String()) || !strings.Contains(lines[0], "task=t1") {
		t.Errorf("line with a span: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line without a span: %s", lines[1])
	}
}

// TestTracerFollowsTheProvider: Tracer is kept between calls, but a new
// global provider gets its own (tests and benchmarks swap providers).
func TestTracerFollowsTheProvider(t *testing.T) {
	defer otel.SetTracerProvider(otel.GetTracerProvider())
	recs := [2]*tracetest.SpanRecorder{tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()}
	for i, rec := range recs {
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
		for range 2 {
			_, span := Tracer().Start(context.Background(), "s")
			span.End()
		}
		if n := len(rec.Ended()); n != 2 {
			t.Fatalf("provider %d recorded %d spans, want 2", i, n)
		}
	}
	if n := len(recs[0].Ended()); n != 2 {
		t.Fatalf("the first provider recorded %d spans after the second was set, want 2", n)
	}
}

// defaultProvider is the API's own provider, taken before any test sets one.
var defaultProvider = otel.GetTracerProvider()

// TestTracing: Tracing is false exactly for the providers whose spans
// cannot record, and follows the global provider as Tracer does.
func TestTracing(t *testing.T) {
	defer otel.SetTracerProvider(otel.GetTracerProvider())
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
		on   bool
	}{
		{"trace.NewNoopTracerProvider", trace.NewNoopTracerProvider(), false}, //nolint:staticcheck // Setup's
		{"noop.NewTracerProvider", tracenoop.NewTracerProvider(), false},
		{"sdk", sdktrace.NewTracerProvider(), true},
		{"sdk never sampling", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())), true},
		{"noop again", tracenoop.NewTracerProvider(), false},
	} {
		otel.SetTracerProvider(c.tp)
		if got := Tracing(); got != c.on {
			t.Errorf("%s: Tracing() = %v, want %v", c.name, got, c.on)
		}
		_, span := Tracer().Start(context.Background(), "s")
		if span.IsRecording() && !c.on {
			t.Errorf("%s: a span records though Tracing() is false", c.name)
		}
		span.End()
	}
}

// TestTracingDefaultProvider: the API's default provider records nothing
// until a provider is set; set back, it delegates to the first provider
// ever set, and Tracing says what that one does. Each case runs in a
// process of its own: the default's delegate is set once per process.
func TestTracingDefaultProvider(t *testing.T) {
	if first := os.Getenv("ATF_TELEMETRY_FIRST_PROVIDER"); first != "" {
		if Tracing() {
			t.Fatalf("the API's default provider (%T), delegating to none: Tracing() = true", otel.GetTracerProvider())
		}
		tp := trace.TracerProvider(sdktrace.NewTracerProvider())
		if first == "noop" {
			tp = trace.NewNoopTracerProvider() //nolint:staticcheck // Setup's
		}
		otel.SetTracerProvider(tp)
		otel.SetTracerProvider(defaultProvider)
		_, span := Tracer().Start(context.Background(), "s")
		defer span.End()
		if Tracing() != (first == "sdk") || span.IsRecording() != (first == "sdk") {
			t.Fatalf("the default set back, delegating to %s: Tracing() = %v, a span records: %v", first, Tracing(), span.IsRecording())
		}
		return
	}
	for _, first := range []string{"sdk", "noop"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTracingDefaultProvider$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ATF_TELEMETRY_FIRST_PROVIDER="+first)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("first provider %s: %v\n%s", first, err, out)
		}
	}
}

// TestProbe: the spans of the API's default provider tell whether it
// delegates, and to a provider that may record or not.
func TestProbe(t *testing.T) {
	for _, c := range []struct {
		name          string
		tp            trace.TracerProvider
		on, delegated bool
	}{
		{"sdk", sdktrace.NewTracerProvider(), true, true},
		{"sdk, always sampling", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())), true, true},
		{"trace/noop", tracenoop.NewTracerProvider(), false, true},
		{"trace's no-op", trace.NewNoopTracerProvider(), false, true}, //nolint:staticcheck // Setup's
	} {
		if on, delegated := probe(c.tp.Tracer(Scope)); on != c.on || delegated != c.delegated {
			t.Errorf("%s: probe = %v, %v; want %v, %v", c.name, on, delegated, c.on, c.delegated)
		}
	}
}

// TestMetricsOffAllocateNothing: before Setup the instruments are no-ops and
// the record functions return before building anything.
func TestMetricsOffAllocateNothing(t *testing.T) {
	saved := current.Load()
	defer current.Store(saved)
	current.Store(newInstruments(metricnoop.NewMeterProvider().Meter(Scope), false, nil))
	allocs := testing.AllocsPerRun(100, func() {
		TaskStarted(context.Background(), "hello", time.Millisecond)
		TaskFinished(context.Background(), "hello", "success", time.Millisecond, time.Millisecond, 1<<20)
		TaskClaimed(context.Background(), "hello", 3, time.Millisecond)
	})
	if allocs != 0 {
		t.Errorf("%v allocations with metrics off, want 0", allocs)
	}
}

// TestAttributeSetsCached: a set is built once per distinct value and its
// attributes are those asked for.
func TestAttributeSetsCached(t *testing.T) {
	a, b := attrs2(KeyLambda, "cached", KeyPriority.Int(3)), attrs2(KeyLambda, "cached", KeyPriority.Int(3))
	if a != b {
		t.Error("the same attributes gave two sets")
	}
	if c := attrs2(KeyLambda, "cached", KeyPriority.Int(4)); c == a {
		t.Error("other attributes gave the same set")
	}
	if c := attrs1(KeyLambda, "cached"); c == a {
		t.Error("one attribute gave the set of two")
	}
	// Sets added after it stay the same sets, found without the lock once
	// published.
	first := map[int]*attrSet{}
	for round := range 3 {
		for i := range 200 {
			s := attrs2(KeyLambda, "many", KeyPriority.Int(i))
			if round == 0 {
				first[i] = s
			} else if s != first[i] {
				t.Fatalf("round %d: set %d changed", round, i)
			}
		}
	}
	for range maxCachedSets { // lookups under the lock publish the sets
		attrs2(KeyLambda, "many", KeyPriority.Int(199))
	}
	if m := sets.read.Load(); m == nil || (*m)[keyOf(KeyLambda, "many", KeyPriority.Int(199))] != first[199] {
		t.Error("the sets were not published")
	}
	if n := testing.AllocsPerRun(100, func() { attrs2(KeyLambda, "cached", KeyPriority.Int(3)) }); n != 0 {
		t.Errorf("a cached set costs %v allocations, want 0", n)
	}
	set := metric.NewAddConfig(a.add).Attributes()
	if v, _ := set.Value(KeyLambda); v.AsString() != "cached" || set.Len() != 2 {
		t.Errorf("set = %v", set.ToSlice())
	}
	if v, _ := set.Value(KeyPriority); v.AsInt64() != 3 {
		t.Errorf("set = %v", set.ToSlice())
	}
}

// BenchmarkTaskMetrics: the metrics of one task's life as the roles record
// them, with Setup's meter provider (metrics on, as atf always runs).
func BenchmarkTaskMetrics(b *testing.B) {
	tel := mustSetup(b, env())
	defer tel.Close(context.Background())
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			TaskScheduled(ctx, "hello")
			TaskPushed(ctx, "hello", ReasonDue)
			TaskClaimed(ctx, "hello", 0, time.Millisecond)
			TaskStarted(ctx, "hello", time.Millisecond)
			TaskFinished(ctx, "hello", "success", time.Millisecond, time.Millisecond, 1<<20)
		}
	})
}

// TestExemplarFilter: with tracing off, metrics record no exemplars (they
// would name traces never exported), unless OTEL_METRICS_EXEMPLAR_FILTER
// says otherwise; with tracing on, the SDK's trace-based default.
func TestExemplarFilter(t *testing.T) {
	sampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	}))
	if f := exemplarFilter(env(), false); f == nil || f(sampled) {
		t.Errorf("tracing off: a sampled measurement is offered for an exemplar")
	}
	if f := exemplarFilter(env("OTEL_METRICS_EXEMPLAR_FILTER", "always_on"), false); f != nil {
		t.Errorf("tracing off, OTEL_METRICS_EXEMPLAR_FILTER=always_on: the environment is overridden")
	}
	if f := exemplarFilter(env(), true); f != nil {
		t.Errorf("tracing on: not the SDK's default filter")
	}
}

// mustSetup is Setup with getenv, failing tb on an error.
func mustSetup(tb testing.TB, getenv func(string) string) *Telemetry {
	tb.Helper()
	tel, err := Setup(context.Background(), Options{Getenv: getenv})
	if err != nil {
		tb.Fatal(err)
	}
	return tel
}
