package otelstatus_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/otelstatus"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// The trace of the client that submits in TestTrace, as its traceparent
// header gives it.
const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00f067aa0ba902b7"
)

// submitMux returns a mux whose POST /submit/{id} creates task id and runs
// a pipeline of steps a and b for it in the background, on runner; b
// fails. Each step sends the trace id of its context on traces.
func submitMux(t *testing.T, f *fixture, runner *pipeline.Runner, traces chan<- string) *http.ServeMux {
	t.Helper()
	step := func(name string) pipeline.Stage {
		return pipeline.Step(name, func(ctx context.Context, _ *pipeline.Task) error {
			traces <- trace.SpanContextFromContext(ctx).TraceID().String()
			if name == "b" {
				return timeoutError{}
			}
			return nil
		})
	}
	p, err := pipeline.New(step("a"), step("b"))
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /submit/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := f.tr.Apply(r.Context(), id, tracker.Create(p.Steps()...), tracker.Kind("document")); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if err := runner.Go(r.Context(), p, f.tr, id); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	return mux
}

// byName returns the spans by name.
func byName(spans tracetest.SpanStubs) map[string]tracetest.SpanStub {
	m := make(map[string]tracetest.SpanStub, len(spans))
	for _, s := range spans {
		m[s.Name] = s
	}
	return m
}

// TestTrace: the task's span and its steps' spans are in the trace of the
// request that submitted it, which continues the client's, and the steps'
// work runs in that trace's context.
func TestTrace(t *testing.T) {
	f := newFixture(t)
	runner := pipeline.NewRunner()
	traces := make(chan string, 2)
	h := httpapi.CorrelationHandler(f.tel.Handler(submitMux(t, f, runner, traces)))

	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/submit/doc", nil)
	req.Header.Set("Traceparent", "00-"+clientTrace+"-"+clientParent+"-01")
	req.Header.Set("X-Correlation-ID", "corr-1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusAccepted, rec.Code)
	runner.Wait()
	close(traces)
	for id := range traces {
		assert.Equal(t, clientTrace, id, "the background work carries the request's trace")
	}

	spans := byName(f.spans.GetSpans())
	require.Len(t, spans, 4, "request, task, and steps a and b: %v", spans)
	request, task := spans["POST /submit/{id}"], spans["task document"]
	a, b := spans["step a"], spans["step b"]

	assert.Equal(t, clientTrace, request.SpanContext.TraceID().String(), "the request continues the client's trace")
	assert.Equal(t, clientParent, request.Parent.SpanID().String())
	assert.Equal(t, trace.SpanKindServer, request.SpanKind)
	assert.Contains(t, request.Attributes, otelstatus.CorrelationKey.String("corr-1"))

	assert.Equal(t, request.SpanContext.TraceID(), task.SpanContext.TraceID(), "the task is in the request's trace")
	assert.Equal(t, request.SpanContext.SpanID(), task.Parent.SpanID(), "the task's span is a child of the request's")
	for _, step := range []tracetest.SpanStub{a, b} {
		assert.Equal(t, task.SpanContext.SpanID(), step.Parent.SpanID(), "%s is a child of the task's span", step.Name)
		assert.False(t, step.StartTime.Before(task.StartTime), "%s starts within the task", step.Name)
		assert.False(t, step.EndTime.After(task.EndTime), "%s ends within the task", step.Name)
	}
	assert.Equal(t, codes.Error, task.Status.Code)
	assert.Equal(t, codes.Error, b.Status.Code)
	assert.Equal(t, codes.Unset, a.Status.Code)
	for _, s := range spans {
		for _, kv := range s.Attributes {
			assert.NotEqual(t, "doc", kv.Value.String(), "%s: no attribute holds the task id (%s)", s.Name, kv.Key)
		}
	}
}

// TestHandler: each answer is counted by route and code; a request no
// pattern matches is "unmatched"; the handler served can still flush.
func TestHandler(t *testing.T) {
	f := newFixture(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("data\n"))
		assert.NoError(t, http.NewResponseController(w).Flush(), "the wrapped writer flushes")
	})
	mux.HandleFunc("GET /gone", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusGone)
		w.WriteHeader(http.StatusOK) // superfluous: the first code is the answer's
	})
	h := f.tel.Handler(mux)
	for _, path := range []string{"/stream", "/stream", "/gone", "/nowhere"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	}
	for _, tc := range []struct {
		route, code string
		want        int64
	}{
		{"GET /stream", "200", 2},
		{"GET /gone", "410", 1},
		{"unmatched", "404", 1},
	} {
		n, _ := f.count(t, "taskstatus.http.requests", otelstatus.RouteKey.String(tc.route), otelstatus.CodeKey.String(tc.code))
		assert.Equal(t, tc.want, n, "%s %s", tc.route, tc.code)
	}
}

// TestLogEvents: each event is a record with the task's id, kind and
// correlation id and the trace id of its context; the end is at level
// Info, a failure at Warn.
func TestLogEvents(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFixture(t)
	tr, err := tracker.New(f.mem, tracker.WithObserver(otelstatus.LogEvents(logger)),
		tracker.WithErrorHandler(func(context.Context, error) {}))
	require.NoError(t, err)
	defer func() { require.NoError(t, tr.Close(context.Background())) }()

	ctx, span := f.tp.Tracer("test").Start(tracker.ContextWithCorrelationID(t.Context(), "corr-1"), "request")
	defer span.End()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create(), tracker.Kind("document")))
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Fail(errors.New("boom"), nil)))
	require.ErrorIs(t, tr.Apply(ctx, "doc", tracker.Cancel(nil)), store.ErrTerminal)

	var got []map[string]any
	for line := range bytes.Lines(buf.Bytes()) {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(line, &rec))
		got = append(got, rec)
	}
	require.Len(t, got, 3)
	for i, want := range []struct{ level, msg, kind string }{
		{"DEBUG", "task changed", "document"},
		{"INFO", "task ended", "document"},
		{"WARN", "task change failed", ""},
	} {
		assert.Equal(t, want.level, got[i]["level"], i)
		assert.Equal(t, want.msg, got[i]["msg"], i)
		assert.Equal(t, want.kind, got[i]["kind"], i)
		assert.Equal(t, "doc", got[i]["task_id"], i)
		assert.Equal(t, "corr-1", got[i]["correlation_id"], i)
		assert.Equal(t, span.SpanContext().TraceID().String(), got[i]["trace_id"], i)
	}
}
