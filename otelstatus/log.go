package otelstatus

import (
	"cmp"
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/taskstatus/taskstatus/tracker"
)

// LogEvents returns a [tracker.Observer] that writes each event of a
// Tracker to l as a record with the task's id, kind and correlation id
// and the trace id of the event's context: writes at level Debug, but the
// write that ended a task at level Info, and errors at level Warn (the
// error handler of the Tracker decides how loud they are in its own log).
func LogEvents(l *slog.Logger) tracker.Observer {
	return func(ctx context.Context, e tracker.Event) {
		level, msg := slog.LevelDebug, "task changed"
		switch {
		case e.Err != nil:
			level, msg = slog.LevelWarn, "task change failed"
		case e.Ended():
			level, msg = slog.LevelInfo, "task ended"
		}
		if !l.Enabled(ctx, level) {
			return
		}
		attrs := []slog.Attr{
			slog.String("task_id", e.ID),
			slog.String("kind", e.Next.Kind),
			slog.String("correlation_id", cmp.Or(e.Next.CorrelationID, tracker.CorrelationID(ctx))),
			slog.String("op", e.Op),
		}
		if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
		if e.Err != nil {
			attrs = append(attrs, slog.String("err", e.Err.Error()))
		} else {
			attrs = append(attrs, slog.String("status", string(e.Next.Status)),
				slog.Int64("version", e.Next.Version), slog.Duration("took", e.Took))
		}
		l.LogAttrs(ctx, level, msg, attrs...)
	}
}
