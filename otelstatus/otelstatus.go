package otelstatus

import (
	"context"
	"encoding/json"
	"errors"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// ScopeName is the instrumentation scope of the meters and tracers that
// a Telemetry makes.
const ScopeName = "github.com/taskstatus/taskstatus/otelstatus"

// The attribute keys of the metrics and spans. Their values come from
// sets the service's code bounds: task kinds, step names, statuses, the
// type names of errors, store operations, route patterns, status codes.
// No attribute holds a task id.
const (
	KindKey          = attribute.Key("kind")           // the task's kind
	StatusKey        = attribute.Key("status")         // the task's status: success, failed, canceled
	StepKey          = attribute.Key("step")           // a step's name
	OutcomeKey       = attribute.Key("outcome")        // how a step or a store call ended
	ExceptionTypeKey = attribute.Key("exception_type") // the type of a failed task's error
	OperationKey     = attribute.Key("operation")      // a store call: get, put, delete, watch, list, count
	RouteKey         = attribute.Key("route")          // the pattern that served a request
	CodeKey          = attribute.Key("code")           // an HTTP response's status code
	AttemptKey       = attribute.Key("attempt")        // the task's attempt (spans only)
	CorrelationKey   = attribute.Key("correlation_id") // the task's correlation id (spans only)
)

// Telemetry makes OpenTelemetry metrics and spans of what the taskstatus
// packages do: of a Tracker's transitions ([Telemetry.Observe]), of a
// store's calls ([Telemetry.Store]) and of HTTP requests
// ([Telemetry.Handler]). Its methods are safe for concurrent use.
type Telemetry struct {
	tracer trace.Tracer

	created  metric.Int64Counter
	ended    metric.Int64Counter
	failures metric.Int64Counter
	running  metric.Int64UpDownCounter
	taskTime metric.Float64Histogram
	stepTime metric.Float64Histogram
	store    metric.Float64Histogram
	requests metric.Int64Counter

	// The attribute sets of the records, each made once.
	kindSets  setCache[kindSet]
	endSets   setCache[endSet]
	stepSets  setCache[stepSet]
	storeSets setCache[storeSet]
}

// Option configures a Telemetry.
type Option func(*config)

type config struct {
	meters  metric.MeterProvider
	tracers trace.TracerProvider
}

// WithMeterProvider sets where the metrics go. The default is the global
// provider, [otel.GetMeterProvider].
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meters = mp }
}

// WithTracerProvider sets where the spans go. The default is the global
// provider, [otel.GetTracerProvider].
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tracers = tp }
}

// Bucket boundaries, in seconds, of the task and step durations (from a
// few milliseconds to an hour) and of the store calls (from 100
// microseconds to 5 seconds).
var (
	taskBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	storeBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
)

// New returns a Telemetry that makes its instruments from the providers
// the options set.
func New(opts ...Option) (*Telemetry, error) {
	c := config{}
	for _, opt := range opts {
		opt(&c)
	}
	if c.meters == nil {
		c.meters = otel.GetMeterProvider()
	}
	if c.tracers == nil {
		c.tracers = otel.GetTracerProvider()
	}
	m := c.meters.Meter(ScopeName)
	t := &Telemetry{tracer: c.tracers.Tracer(ScopeName)}
	var errs [8]error
	t.created, errs[0] = m.Int64Counter("taskstatus.tasks.created",
		metric.WithDescription("Tasks created, by kind."), metric.WithUnit("{task}"))
	t.ended, errs[1] = m.Int64Counter("taskstatus.tasks.ended",
		metric.WithDescription("Tasks ended, by kind and status."), metric.WithUnit("{task}"))
	t.failures, errs[2] = m.Int64Counter("taskstatus.tasks.failures",
		metric.WithDescription("Tasks ended failed, by kind, the step that failed and the exception type."), metric.WithUnit("{task}"))
	t.running, errs[3] = m.Int64UpDownCounter("taskstatus.tasks.running",
		metric.WithDescription("Tasks running, by kind: summed over the processes that write them."), metric.WithUnit("{task}"))
	t.taskTime, errs[4] = m.Float64Histogram("taskstatus.task.duration",
		metric.WithDescription("How long tasks ran, from their start to their end, by kind and status."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(taskBuckets...))
	t.stepTime, errs[5] = m.Float64Histogram("taskstatus.step.duration",
		metric.WithDescription("How long steps ran, by kind, step and outcome."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(taskBuckets...))
	t.store, errs[6] = m.Float64Histogram("taskstatus.store.duration",
		metric.WithDescription("Store calls, by operation and outcome (ok, not_found, conflict, unavailable, canceled, error)."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(storeBuckets...))
	t.requests, errs[7] = m.Int64Counter("taskstatus.http.requests",
		metric.WithDescription("HTTP requests answered, by route and status code."), metric.WithUnit("{request}"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return t, nil
}

// Observe records an event of a Tracker: pass it to
// [tracker.WithObserver]. It counts the tasks created and ended, the
// failures and the tasks running, records the durations of the task and
// of the steps that the write ended, and, for the write that ended a
// task, makes its spans (see the package doc).
func (t *Telemetry) Observe(ctx context.Context, e tracker.Event) {
	if e.Err != nil {
		return
	}
	prev, next := &e.Prev, &e.Next
	if prev.Status == next.Status && !stepEnded(prev, next) {
		return // progress, results, heartbeats: nothing to count
	}
	kind := t.kindSets.get(kindSet{next.Kind})
	if prev.Status == "" {
		t.created.Add(ctx, 1, kind)
	}
	switch {
	case prev.Status != store.StatusRunning && next.Status == store.StatusRunning:
		t.running.Add(ctx, 1, kind)
	case prev.Status == store.StatusRunning && next.Status != store.StatusRunning:
		t.running.Add(ctx, -1, kind)
	}
	t.recordSteps(ctx, prev, next)
	if e.Ended() {
		t.recordEnd(ctx, next)
	}
}

// recordSteps records the durations of the steps of next that ran and
// had not ended in prev.
func (t *Telemetry) recordSteps(ctx context.Context, prev, next *store.State) {
	for i := range next.Steps {
		if s := &next.Steps[i]; s.Status.Terminal() && !stepDone(prev, i, s.Name) && !s.StartedAt.IsZero() {
			t.stepTime.Record(ctx, s.CompletedAt.Sub(s.StartedAt).Seconds(),
				t.stepSets.get(stepSet{next.Kind, s.Name, string(s.Status)}))
		}
	}
}

// recordEnd records the end of the task whose state is st, and makes its
// spans.
func (t *Telemetry) recordEnd(ctx context.Context, st *store.State) {
	attrs := t.endSets.get(endSet{st.Kind, string(st.Status)})
	t.ended.Add(ctx, 1, attrs)
	if !st.StartedAt.IsZero() {
		t.taskTime.Record(ctx, st.CompletedAt.Sub(st.StartedAt).Seconds(), attrs)
	}
	if st.Status == store.StatusFailed {
		t.failures.Add(ctx, 1, metric.WithAttributes(KindKey.String(st.Kind),
			StepKey.String(failedStep(st)), ExceptionTypeKey.String(detail(st, tracker.ExceptionTypeKey))))
	}
	t.spans(ctx, st)
}

// stepEnded reports whether a step of next has ended that had not in prev.
func stepEnded(prev, next *store.State) bool {
	for i := range next.Steps {
		if next.Steps[i].Status.Terminal() && !stepDone(prev, i, next.Steps[i].Name) {
			return true
		}
	}
	return false
}

// stepDone reports whether st's step i, named name, had ended. Steps are
// only ever added after the others, so a step keeps its index.
func stepDone(st *store.State, i int, name string) bool {
	return i < len(st.Steps) && st.Steps[i].Name == name && st.Steps[i].Status.Terminal()
}

// failedStep names the step that failed st: the one its error details
// name, or else its first failed step, or else "".
func failedStep(st *store.State) string {
	if s := detail(st, pipeline.FailedStepKey); s != "" {
		return s
	}
	for _, s := range st.Steps {
		if s.Status == store.StepFailed {
			return s.Name
		}
	}
	return ""
}

// detail returns st's error detail key if it is a string, or "".
func detail(st *store.State, key string) string {
	var s string
	if raw, ok := st.ErrorDetails[key]; ok && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}
