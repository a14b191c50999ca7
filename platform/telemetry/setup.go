package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Options configure Setup.
type Options struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME says otherwise.
	// Default "atf".
	ServiceName string
	// Getenv reads the OTEL_* variables that decide whether anything is
	// exported. Default: none set. (autoexport itself reads os.Getenv.)
	Getenv func(string) string
}

// Telemetry is one process's providers. Close flushes and stops them.
type Telemetry struct {
	// Tracing reports whether spans are recorded and exported.
	Tracing bool
	// OTLPMetrics reports whether metrics are exported (besides /metrics).
	OTLPMetrics bool

	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	metrics        http.Handler
	closers        []func(context.Context) error
}

// Setup builds the providers the OTEL_* environment asks for and installs
// them as the otel globals (with the W3C trace context and baggage
// propagators), which is where atf's packages and otelconnect find them.
//
// Traces are exported only when OTEL_TRACES_EXPORTER names an exporter
// other than "none", or OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (then OTLP, over
// OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf). Metrics likewise
// with OTEL_METRICS_EXPORTER / OTEL_EXPORTER_OTLP_METRICS_ENDPOINT; the
// Prometheus handler works either way. OTEL_SDK_DISABLED=true turns both
// exports off. Sampling is OTEL_TRACES_SAMPLER (default parent-based
// always-on) behind the Sampler of this package.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	if opts.ServiceName == "" {
		opts.ServiceName = "atf"
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	t := &Telemetry{}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(opts.ServiceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	disabled := strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true")

	// Traces.
	t.tracerProvider = trace.NewNoopTracerProvider() //nolint:staticcheck // the API's no-op; see doc.go
	if !disabled && wants(getenv, "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
		exp, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: trace exporter (OTEL_TRACES_EXPORTER=%q): %w", getenv("OTEL_TRACES_EXPORTER"), err)
		}
		if !autoexport.IsNoneSpanExporter(exp) {
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithResource(res),
				sdktrace.WithBatcher(exp),
				sdktrace.WithSampler(Sampler(samplerFromEnv(getenv))),
			)
			t.tracerProvider, t.Tracing = tp, true
			t.closers = append(t.closers, tp.Shutdown)
		}
	}
	otel.SetTracerProvider(t.tracerProvider)

	// Metrics: always readable on /metrics; over OTLP when asked.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every reader gets hp, which reports the counted histograms if there
	// are any (taskHistograms).
	hp := &histProducer{}
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithProducer(hp))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	limit := cardinalityLimit()
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp), sdkmetric.WithCardinalityLimit(limit)}
	producedAsSDK := true // hp's histograms reach every reader as the SDK's would
	if !disabled && wants(getenv, "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") && getenv("OTEL_METRICS_EXPORTER") != "prometheus" {
		r, err := autoexport.NewMetricReader(context.WithValue(ctx, producerKey{}, hp))
		if err != nil {
			return nil, fmt.Errorf("telemetry: metric reader (OTEL_METRICS_EXPORTER=%q): %w", getenv("OTEL_METRICS_EXPORTER"), err)
		}
		if !autoexport.IsNoneMetricReader(r) {
			mopts = append(mopts, sdkmetric.WithReader(r))
			t.OTLPMetrics = true
			producedAsSDK = hp.attached.Load() && otlpHistogramsAsCounted()
		}
	}
	noExemplars := false
	if f := exemplarFilter(getenv, t.Tracing); f != nil {
		mopts = append(mopts, sdkmetric.WithExemplarFilter(f))
		noExemplars = true // exemplarFilter's only filter is AlwaysOff
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	t.meterProvider = mp
	t.closers = append(t.closers, mp.Shutdown)
	otel.SetMeterProvider(mp)
	// No exemplars: atf counts (taskCounters), and keeps the histograms
	// when hp reports them as the SDK would.
	var hists *countedHists
	if noExemplars && producedAsSDK {
		hists = newCountedHists(limit)
		hp.hists.Store(hists)
	}
	current.Store(newInstruments(mp.Meter(Scope), noExemplars, hists))
	t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return t, nil
}

// wants reports whether the environment asks for an export of one signal:
// its exporter variable names one other than "none", or an OTLP endpoint
// (general or the signal's own) is set.
func wants(getenv func(string) string, exporterVar, endpointVar string) bool {
	if v := strings.TrimSpace(getenv(exporterVar)); v != "" {
		return v != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv(endpointVar) != ""
}

// samplerFromEnv is the sampler OTEL_TRACES_SAMPLER names (the SDK's
// default when none), for Sampler to wrap.
func samplerFromEnv(getenv func(string) string) sdktrace.Sampler {
	arg := getenv("OTEL_TRACES_SAMPLER_ARG")
	ratio := 1.0
	if arg != "" {
		if _, err := fmt.Sscanf(arg, "%g", &ratio); err != nil || ratio < 0 || ratio > 1 {
			ratio = 1
		}
	}
	switch getenv("OTEL_TRACES_SAMPLER") {
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	case "always_on":
		return sdktrace.AlwaysSample()
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// TracerProvider is the process's tracer provider (a no-op one when
// tracing is off).
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracerProvider }

// MeterProvider is the process's meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meterProvider }

// MetricsHandler serves the metrics in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metrics }

// Close flushes pending spans and metrics and stops the exporters.
func (t *Telemetry) Close(ctx context.Context) error {
	var errs []error
	for _, c := range t.closers {
		errs = append(errs, c(ctx))
	}
	return errors.Join(errs...)
}

// exemplarFilter is the metrics' exemplar filter when it is not the SDK's
// default (trace-based), nil otherwise. Exemplars name the trace of a
// measurement's context, and every task's context carries a sampled one
// (its stored traceparent): with tracing off none of those traces is
// exported, so exemplars would point at nothing and cost every
// measurement a reservoir offer. They are off then, unless
// OTEL_METRICS_EXEMPLAR_FILTER says otherwise (the SDK reads it).
func exemplarFilter(getenv func(string) string, tracing bool) exemplar.Filter {
	if tracing || getenv("OTEL_METRICS_EXEMPLAR_FILTER") != "" {
		return nil
	}
	return exemplar.AlwaysOffFilter
}
