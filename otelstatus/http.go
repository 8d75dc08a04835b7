package otelstatus

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/taskstatus/taskstatus/tracker"
)

// Handler returns h, an [http.ServeMux] or any handler that sets
// [http.Request.Pattern], with a server span for each request and each
// answer counted in taskstatus.http.requests by route (the pattern that
// matched, or "unmatched") and status code.
//
// The span continues the trace of the request's W3C traceparent header,
// if it has one, and is in the request's context, which the service keeps
// for its background work with [context.WithoutCancel]: the spans of a
// task are then in the trace of the request that submitted it (see
// [Telemetry.Observe]). Put Handler inside httpapi's CorrelationHandler,
// so that the span has the request's correlation id.
func (t *Telemetry) Handler(h http.Handler) http.Handler {
	prop := propagation.TraceContext{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method)))
		defer span.End()
		if id := tracker.CorrelationID(ctx); id != "" {
			span.SetAttributes(CorrelationKey.String(id))
		}
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		r = r.WithContext(ctx)
		h.ServeHTTP(rw, r)

		route := r.Pattern // set by the mux on the request it served
		if route == "" {
			route = "unmatched"
		} else {
			span.SetName(route)
		}
		span.SetAttributes(RouteKey.String(route), attribute.Int("http.response.status_code", rw.code))
		t.requests.Add(ctx, 1, metric.WithAttributes(RouteKey.String(route), CodeKey.String(strconv.Itoa(rw.code))))
	})
}

// statusWriter keeps the status code of the answer it writes.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 { // 1xx answers are not the last
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the ResponseWriter it wraps, for [http.ResponseController].
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
