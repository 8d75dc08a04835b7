package otelstatus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/otelstatus"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// fixture is a Telemetry whose metrics a test reads and whose spans it
// keeps, and a Tracker it observes, over a memstore on a manual clock.
type fixture struct {
	tel    *otelstatus.Telemetry
	reader *sdkmetric.ManualReader
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	mem    *memstore.Store
	tr     *tracker.Tracker
	clock  *storetest.Clock
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{reader: sdkmetric.NewManualReader(), spans: tracetest.NewInMemoryExporter(), clock: storetest.NewClock(t0)}
	f.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(f.spans))
	var err error
	f.tel, err = otelstatus.New(
		otelstatus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(f.reader))),
		otelstatus.WithTracerProvider(f.tp))
	require.NoError(t, err)
	f.mem, err = memstore.New(memstore.WithClock(f.clock.Now))
	require.NoError(t, err)
	f.tr, err = tracker.New(f.tel.Store(f.mem), tracker.WithClock(f.clock.Now),
		tracker.WithObserver(f.tel.Observe), tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, f.tr.Close(context.Background()))
		require.NoError(t, f.mem.Close())
		require.NoError(t, f.tp.Shutdown(context.Background()))
	})
	return f
}

// metrics returns the metrics recorded so far, by name.
func (f *fixture) metrics(t *testing.T) map[string]metricdata.Aggregation {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, f.reader.Collect(t.Context(), &rm))
	got := make(map[string]metricdata.Aggregation)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m.Data
		}
	}
	return got
}

// count returns the value of the counter or up-down counter name for the
// attributes attrs, and whether it has one.
func (f *fixture) count(t *testing.T, name string, attrs ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	sum, ok := f.metrics(t)[name].(metricdata.Sum[int64])
	if !ok {
		return 0, false
	}
	want := attribute.NewSet(attrs...)
	for _, dp := range sum.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value, true
		}
	}
	return 0, false
}

// histogram returns the count and sum of the histogram name for attrs,
// zero if it has none.
func (f *fixture) histogram(t *testing.T, name string, attrs ...attribute.KeyValue) (uint64, float64) {
	t.Helper()
	h, _ := f.metrics(t)[name].(metricdata.Histogram[float64])
	want := attribute.NewSet(attrs...)
	for _, dp := range h.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Count, dp.Sum
		}
	}
	return 0, 0
}

// timeoutError is an error type the tests fail tasks with.
type timeoutError struct{}

func (timeoutError) Error() string { return "timed out" }

var (
	document = otelstatus.KindKey.String("document")
	stepA    = otelstatus.StepKey.String("a")
	stepB    = otelstatus.StepKey.String("b")
)

// runTasks runs two tasks of kind document with steps a and b: "ok"
// succeeds, its steps taking 2s and 3s, and "bad" fails at b, after 1s
// and 4s. It calls mid once both are running.
func (f *fixture) runTasks(t *testing.T, mid func()) {
	t.Helper()
	ctx := t.Context()
	var runs []*tracker.Run
	for _, id := range []string{"ok", "bad"} {
		require.NoError(t, f.tr.Apply(ctx, id, tracker.Create("a", "b"), tracker.Kind("document")))
		run, err := f.tr.Start(ctx, id, tracker.StartStep("a"))
		require.NoError(t, err)
		runs = append(runs, run)
	}
	mid()
	ok, bad := runs[0], runs[1]
	f.clock.Advance(time.Second)
	require.NoError(t, bad.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b")))
	f.clock.Advance(time.Second)
	require.NoError(t, ok.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b")))
	require.NoError(t, ok.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1, Total: 2})))
	f.clock.Advance(3 * time.Second)
	require.NoError(t, ok.Apply(ctx, tracker.SucceedStep("b"), tracker.Succeed()))
	err := timeoutError{}
	require.NoError(t, bad.Apply(ctx, tracker.FailStep("b", err), tracker.Fail(err, map[string]any{"failed_step": "b"})))
}

// TestMetrics: the counts and durations recorded are those of what ran.
func TestMetrics(t *testing.T) {
	f := newFixture(t)
	f.runTasks(t, func() {
		n, _ := f.count(t, "taskstatus.tasks.running", document)
		assert.EqualValues(t, 2, n, "running while both run")
	})

	for _, tc := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{"taskstatus.tasks.created", []attribute.KeyValue{document}, 2},
		{"taskstatus.tasks.running", []attribute.KeyValue{document}, 0},
		{"taskstatus.tasks.ended", []attribute.KeyValue{document, otelstatus.StatusKey.String("success")}, 1},
		{"taskstatus.tasks.ended", []attribute.KeyValue{document, otelstatus.StatusKey.String("failed")}, 1},
		{"taskstatus.tasks.failures", []attribute.KeyValue{document, stepB, otelstatus.ExceptionTypeKey.String("otelstatus_test.timeoutError")}, 1},
	} {
		n, ok := f.count(t, tc.name, tc.attrs...)
		assert.True(t, ok, "%s %v recorded", tc.name, tc.attrs)
		assert.Equal(t, tc.want, n, "%s %v", tc.name, tc.attrs)
	}

	for _, tc := range []struct {
		name  string
		attrs []attribute.KeyValue
		count uint64
		sum   float64
	}{
		{"taskstatus.step.duration", []attribute.KeyValue{document, stepA, otelstatus.OutcomeKey.String("success")}, 2, 3},
		{"taskstatus.step.duration", []attribute.KeyValue{document, stepB, otelstatus.OutcomeKey.String("success")}, 1, 3},
		{"taskstatus.step.duration", []attribute.KeyValue{document, stepB, otelstatus.OutcomeKey.String("failed")}, 1, 4},
		{"taskstatus.task.duration", []attribute.KeyValue{document, otelstatus.StatusKey.String("success")}, 1, 5},
		{"taskstatus.task.duration", []attribute.KeyValue{document, otelstatus.StatusKey.String("failed")}, 1, 5},
	} {
		count, sum := f.histogram(t, tc.name, tc.attrs...)
		assert.Equal(t, tc.count, count, "%s %v count", tc.name, tc.attrs)
		assert.InDelta(t, tc.sum, sum, 1e-9, "%s %v sum", tc.name, tc.attrs)
	}

	// The store calls: a put per write, no read (the tracker keeps the
	// states it writes), and a Get of an unknown task.
	_, err := f.tr.Get(t.Context(), "unknown")
	require.ErrorIs(t, err, store.ErrNotFound)
	puts, _ := f.histogram(t, "taskstatus.store.duration", otelstatus.OperationKey.String("put"), otelstatus.OutcomeKey.String("ok"))
	assert.EqualValues(t, 2+2+4+1, puts, "puts: creates, starts, steps and ends, progress")
	gets, _ := f.histogram(t, "taskstatus.store.duration", otelstatus.OperationKey.String("get"), otelstatus.OutcomeKey.String("not_found"))
	assert.EqualValues(t, 1, gets)
}

// TestMetricsCanceledPending: a task canceled while pending ends, never
// ran, and leaves the running count alone.
func TestMetricsCanceledPending(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Create("a"), tracker.Kind("document")))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.RequestCancel("no")))
	n, _ := f.count(t, "taskstatus.tasks.ended", document, otelstatus.StatusKey.String("canceled"))
	assert.EqualValues(t, 1, n)
	_, ok := f.count(t, "taskstatus.tasks.running", document)
	assert.False(t, ok, "never running")
	count, _ := f.histogram(t, "taskstatus.task.duration", document, otelstatus.StatusKey.String("canceled"))
	assert.Zero(t, count, "no duration for a task that never started")
}

// TestMetricsIgnoreErrors: a refused change counts nothing.
func TestMetricsIgnoreErrors(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Create(), tracker.Kind("document")))
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.Create(), tracker.Kind("document")), store.ErrExists)
	n, _ := f.count(t, "taskstatus.tasks.created", document)
	assert.EqualValues(t, 1, n)
}

// TestMetricsManyKinds: past the sets the adapter keeps made, a service
// with more kinds than it should have still gets each counted right.
func TestMetricsManyKinds(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	const kinds = 1100 // more than the adapter keeps
	for i := range kinds {
		id := fmt.Sprintf("doc-%d", i)
		require.NoError(t, f.tr.Apply(ctx, id, tracker.Create(), tracker.Kind(fmt.Sprintf("kind-%d", i))))
	}
	require.NoError(t, f.tr.Apply(ctx, "again", tracker.Create(), tracker.Kind("kind-1099")))
	for _, i := range []int{0, 999, 1000, 1099} {
		n, _ := f.count(t, "taskstatus.tasks.created", otelstatus.KindKey.String(fmt.Sprintf("kind-%d", i)))
		want := int64(1)
		if i == 1099 {
			want = 2
		}
		assert.Equal(t, want, n, "kind-%d", i)
	}
}
