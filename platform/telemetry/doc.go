// Package telemetry is atf's OpenTelemetry setup: the tracer and meter
// providers every process installs from the standard OTEL_* environment,
// the instruments the roles record into, the sampler that keeps Redis and
// polling spans from drowning task traces, and a slog handler that stamps
// trace and span ids on every line logged with a task's context.
//
// # One trace per task
//
// The frontend stores the context of its Schedule span on the task
// (Task.TraceParent). Every later step starts a span whose parent is that
// stored context, so a task's whole life is one trace however many
// processes it crosses:
//
//	client span (the caller's traceparent, if any)
//	└─ atf.v1.TaskService/Schedule      otelconnect server span (Connect, gRPC)
//	   └─ atf.schedule                  frontend, one per task (a batch's too); its
//	      │                             context is stored on the task
//	      ├─ atf.enqueue                store consumer: NEW → ENQUEUED, re-enqueues;
//	      │                             frontend (atf.enqueue.by=frontend): due
//	      │                             now, dead letter retried (manual_retry)
//	      ├─ atf.claim                  controller: ENQUEUED → CLAIMED
//	      ├─ atf.execute                executor, one per attempt (a retry links
//	      │  │                          the attempt before it); heartbeats and the
//	      │  │                          lambda's log calls are events; CPU time
//	      │  │                          (atf.task.cpu_seconds) and peak memory
//	      │  ├─ (guest spans)           atf_v1 span_start/span_end, from the ctx of Run
//	      │  └─ atf.v1.HeartbeatService/SetResult   client, then server span
//	      │     └─ atf.set_result       HSC
//	      └─ …
//
// # Cost when off
//
// With no OTEL_TRACES_EXPORTER and no OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT,
// Setup installs no tracer provider at all: spans would be the API's
// non-recording ones, so atf's roles start none (Tracing) and build none of
// their attributes; the contexts they hold carry the stored trace context
// all the same (so logs still get trace ids). Metrics before Setup record
// into a no-op meter: the record functions then build no attribute set. autoexport alone would pick OTLP by default
// and export to localhost:4318 whether or not anything listens there; atf
// asks for tracing to be named instead. Metrics always run (the Prometheus
// /metrics endpoint reads them) and go over OTLP only when asked the same
// way.
package telemetry
