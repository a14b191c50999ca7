package telemetry

import (
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// pollingRoots are the spans of calls an idle platform makes all the time:
// an executor's NextWork long-poll and its batched heartbeat. They belong
// to no task, so as roots of their own traces they would be most of what
// a backend stores.
var pollingRoots = map[string]bool{
	"atf.v1.ControllerService/NextWork":  true,
	"atf.v1.HeartbeatService/Heartbeat":  true,
	"atf.v1.ControllerService/GetModule": true,
}

// Sampler wraps base (the OTEL_TRACES_SAMPLER choice) so that Redis spans
// and polling RPCs are kept only inside a trace that is sampled already:
// as roots — the store consumer's passes, the controller's blocking pops,
// heartbeats — they are dropped. A task's own Redis calls (Schedule's
// script, SetResult's) still show under its spans.
func Sampler(base sdktrace.Sampler) sdktrace.Sampler { return sampler{base: base} }

type sampler struct{ base sdktrace.Sampler }

func (s sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	psc := trace.SpanContextFromContext(p.ParentContext)
	if !psc.IsValid() && (pollingRoots[p.Name] || isRedis(p)) {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return s.base.ShouldSample(p)
}

func (s sampler) Description() string { return "atf(" + s.base.Description() + ")" }

func isRedis(p sdktrace.SamplingParameters) bool {
	for _, a := range p.Attributes {
		if (a.Key == "db.system" || a.Key == "db.system.name") && a.Value.AsString() == "redis" {
			return true
		}
	}
	return false
}
