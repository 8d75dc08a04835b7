package otelstatus

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskstatus/taskstatus/store"
)

// spans makes the spans of the attempt that st, a state that ended the
// task, ended: one for the attempt, from its start to its end, and a
// child of it for each step that ran, from the step's start to its end.
// They are made once the attempt has ended, from the times it recorded,
// as children of the span in ctx: the context of the write that ended
// the task, which for a pipeline run is the context of the request that
// submitted it.
func (t *Telemetry) spans(ctx context.Context, st *store.State) {
	start := st.StartedAt
	if start.IsZero() {
		start = st.CompletedAt // ended before it started: canceled, or failed, while pending
	}
	ctx, task := t.tracer.Start(ctx, spanName("task", st.Kind),
		trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(KindKey.String(st.Kind), StatusKey.String(string(st.Status)),
			AttemptKey.Int(st.Attempt), CorrelationKey.String(st.CorrelationID)))
	defer task.End(trace.WithTimestamp(st.CompletedAt))
	if !task.IsRecording() {
		return // not sampled, or no tracer provider: the steps' spans would not be either
	}
	if st.Status != store.StatusSuccess {
		task.SetStatus(codes.Error, st.ErrorMessage)
	}
	for _, s := range st.Steps {
		if s.StartedAt.IsZero() {
			continue // never ran
		}
		_, step := t.tracer.Start(ctx, spanName("step", s.Name),
			trace.WithTimestamp(s.StartedAt),
			trace.WithAttributes(StepKey.String(s.Name), OutcomeKey.String(string(s.Status))))
		if s.Status == store.StepFailed {
			step.SetStatus(codes.Error, s.Error)
		}
		step.End(trace.WithTimestamp(endOf(s.CompletedAt, st.CompletedAt)))
	}
}

// spanName returns the name of a span of what ("task" or "step") named
// name: "task document", "step embedding".
func spanName(what, name string) string {
	if name == "" {
		return what
	}
	return what + " " + name
}

// endOf returns when a step ended: its own end, or its task's.
func endOf(step, task time.Time) time.Time {
	if step.IsZero() {
		return task
	}
	return step
}
