// Package otelstatus exports what the taskstatus packages do as
// OpenTelemetry metrics and traces, and as slog records: tasks created and
// ended, failures, tasks running, task and step durations, store calls and
// HTTP requests.
//
// A [Telemetry] makes its instruments from a meter provider and a tracer
// provider (the global ones by default) and attaches in three places:
//
//	tel, err := otelstatus.New(otelstatus.WithMeterProvider(mp), otelstatus.WithTracerProvider(tp))
//	st := tel.Store(redisStore)                  // store calls
//	tr, err := tracker.New(st, tracker.WithObserver(tel.Observe),
//		tracker.WithObserver(otelstatus.LogEvents(logger))) // transitions, logs
//	h := httpapi.CorrelationHandler(tel.Handler(mux)) // requests, trace context
//
// # Metrics
//
// The names are OpenTelemetry's; the Prometheus exporter writes them with
// underscores, the unit and _total for counters
// (taskstatus_step_duration_seconds, taskstatus_tasks_ended_total).
//
//	taskstatus.tasks.created   counter    kind
//	taskstatus.tasks.ended     counter    kind, status
//	taskstatus.tasks.failures  counter    kind, step, exception_type
//	taskstatus.tasks.running   up-down    kind
//	taskstatus.task.duration   histogram  kind, status (seconds, start to end)
//	taskstatus.step.duration   histogram  kind, step, outcome (seconds)
//	taskstatus.store.duration  histogram  operation, outcome (seconds)
//	taskstatus.http.requests   counter    route, code
//
// Each process counts the transitions its Tracker writes: tasks.running is
// the number of tasks running when summed over the processes (a task
// started by one and ended by another adds 1 to the first and -1 to the
// second). The failures name the step that failed, as the pipeline records
// it, and the exception type of the task's error details
// ([tracker.ExceptionTypeKey]).
//
// # Bounded cardinality
//
// No attribute, of a metric or of a span, holds a task id. The attributes
// of the metrics hold only values from sets that the service's code
// bounds: kinds, step names, exception types (type names), store
// operations, route patterns and status codes, never a value a client
// chooses. Spans carry the correlation id of their task or request too,
// which is one request's, as a span is; the task id is in the records of
// [LogEvents], with the correlation id and the trace id.
//
// # Traces
//
// [Telemetry.Handler] starts a span for each request, continuing the trace
// of its W3C traceparent header. When a task ends, [Telemetry.Observe]
// makes a span for its attempt, from its start to its end, with a child
// span for each step that ran, from the times the task recorded; they are
// children of the span of the write's context. A pipeline run keeps the
// context of the request that submitted it ([context.WithoutCancel], as
// pipeline.Runner does), so the task's spans are in that request's
// trace. A task ended by another call (a cancel request, a rescue) is in
// that call's trace. The spans are made when the attempt ends, so they
// are not the parents of spans the steps' own work makes.
package otelstatus
