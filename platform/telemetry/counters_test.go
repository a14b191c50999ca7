package telemetry

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCountedCounters: with exemplars off (tracing off, the default) atf
// keeps the per-task counters' sums itself, with them on the SDK does;
// /metrics shows the same atf_tasks_* series, help and types either way,
// including from concurrent measurements and sets built past the cache.
func TestCountedCounters(t *testing.T) {
	scrape := func(t *testing.T, getenv func(string) string, wantCounted bool) []string {
		t.Helper()
		tel := mustSetup(t, getenv)
		defer tel.Close(context.Background())
		if counted := inst().counters.counted != nil; counted != wantCounted {
			t.Fatalf("counted = %v, want %v", counted, wantCounted)
		}
		ctx := context.Background()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 250 {
					TaskScheduled(ctx, "hello")
					TaskPushed(ctx, "hello", ReasonDue)
					TaskStarted(ctx, "hello", -1)
					TaskFinished(ctx, "hello", "success", time.Millisecond, 0, 0)
				}
			})
		}
		wg.Wait()
		TaskFinished(ctx, "hello", "fatal", time.Millisecond, 0, 0)
		TaskPushed(ctx, "other", ReasonRetry)
		TaskPushed(ctx, "other", ReasonRetry)
		rec := httptest.NewRecorder()
		tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		var lines []string
		for l := range strings.Lines(rec.Body.String()) {
			if strings.Contains(l, "atf_tasks_") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	counted := scrape(t, env(), true)
	sdk := scrape(t, env("OTEL_METRICS_EXEMPLAR_FILTER", "always_on"), false)
	for _, want := range []string{
		`atf_tasks_scheduled_total{atf_lambda_name="hello",otel_scope_name="github.com/atfhq/atf",otel_scope_schema_url="",otel_scope_version=""} 1000` + "\n",
		`atf_tasks_finished_total{atf_lambda_name="hello",atf_task_outcome="fatal",otel_scope_name="github.com/atfhq/atf",otel_scope_schema_url="",otel_scope_version=""} 1` + "\n",
		`atf_tasks_enqueued_total{atf_enqueue_reason="retry",atf_lambda_name="other",otel_scope_name="github.com/atfhq/atf",otel_scope_schema_url="",otel_scope_version=""} 2` + "\n",
	} {
		if !slices.Contains(counted, want) {
			t.Errorf("counted: no %s", want)
		}
	}
	if !slices.Equal(counted, sdk) {
		t.Errorf("counted:\n%s\nSDK's:\n%s", strings.Join(counted, ""), strings.Join(sdk, ""))
	}
}

// Sums are kept per set key: a set built anew for every measurement (past
// maxCachedSets) adds to one sum.
func TestCountedSetsByKey(t *testing.T) {
	cs := &countedSets{byKey: map[setKey]*setCounts{}}
	key := setKey{k1: string(KeyLambda), v1: "uncached"}
	for range 3 {
		cs.of(newAttrSet(key, key.attributes()...)).n[counterStarted].Add(1)
	}
	if len(cs.order) != 1 || cs.order[0].n[counterStarted].Load() != 3 {
		t.Errorf("%d sums, the first %d; want one of 3", len(cs.order), cs.order[0].n[counterStarted].Load())
	}
}
