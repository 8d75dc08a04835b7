package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// statusPattern is the pattern of the status endpoint, which names the
// task id document_id.
const statusPattern = "GET /process/document/{document_id}/status"

// How tasks are tracked: kept 24 hours after their last change, as the
// origin does, with a lease that a process renews while it works on a task,
// so that a client can tell a task whose process died (lease_until passed).
const (
	taskTTL   = 24 * time.Hour
	taskLease = 30 * time.Second
)

// server is the document service: its tracker, the runner of its
// pipelines and its HTTP handlers.
type server struct {
	log             *slog.Logger
	tracker         *tracker.Tracker
	runner          *pipeline.Runner
	statusPath      httpapi.StatusPath
	delayScale      float64       // applied to the simulated work of each step
	shutdownTimeout time.Duration // how long in-flight tasks may go on at shutdown
}

// newServer returns a server that tracks tasks in st. It does not own st.
func newServer(st store.Store, logger *slog.Logger, delayScale float64, shutdownTimeout time.Duration) (*server, error) {
	s := &server{
		log:             logger,
		runner:          pipeline.NewRunner(),
		delayScale:      delayScale,
		shutdownTimeout: shutdownTimeout,
	}
	var err error
	s.tracker, err = tracker.New(st,
		tracker.WithTTL(taskTTL),
		tracker.WithLease(taskLease),
		tracker.WithErrorHandler(s.trackingFailed))
	if err != nil {
		return nil, err
	}
	s.statusPath, err = httpapi.ParseStatusPath(statusPattern)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// handler returns the service's HTTP handler. Requests that wait for a
// task to change (long polls, event streams) end when stopping is done.
func (s *server) handler(stopping context.Context) http.Handler {
	status := httpapi.StatusHandler(s.tracker.Store(),
		httpapi.WithPathValue(s.statusPath.Wildcard()),
		httpapi.WithIDField("document_id"),
		httpapi.WithErrorHandler(s.requestFailed))

	mux := http.NewServeMux()
	mux.HandleFunc("POST /process/document", s.submit)
	mux.Handle(statusPattern, endWith(stopping, status))
	return httpapi.CorrelationHandler(mux)
}

// endWith returns h with the context of each request also ended when
// stopping is done.
func endWith(stopping context.Context, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(stopping, cancel)
		defer stop()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// serve answers requests on ln until ctx is done, then shuts down: it
// stops accepting requests, ends those that wait for changes, lets the
// others finish and lets the tasks in flight finish for up to the shutdown
// timeout, after which it cancels them, so that each is recorded as
// finished or canceled and none is left running. ln is closed on return.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	stopping, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	srv := &http.Server{
		Handler:           s.handler(stopping),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(stop)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-served:
		s.log.Error("serving failed", "err", err)
	case <-ctx.Done():
		s.log.Info("shutting down", "timeout", s.shutdownTimeout)
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		s.log.Warn("requests still open at shutdown", "err", serr)
		srv.Close()
	}
	if err == nil {
		err = <-served
	}
	if rerr := s.runner.Shutdown(sctx); rerr != nil {
		s.log.Warn("tasks in flight were canceled", "err", rerr)
	}
	s.log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// trackingFailed logs an error of the tracker. The refusals the submit
// handler expects and answers (the document exists, or is still being
// processed) are logged at debug level.
func (s *server) trackingFailed(ctx context.Context, err error) {
	level := slog.LevelError
	var te *tracker.Error
	if errors.As(err, &te) && (te.Op == "create" && errors.Is(err, store.ErrExists) ||
		te.Op == "retry" && errors.Is(err, store.ErrInvalidTransition)) {
		level = slog.LevelDebug
	}
	s.log.LogAttrs(ctx, level, "tracking failed",
		slog.String("correlation_id", tracker.CorrelationID(ctx)),
		slog.String("err", err.Error()))
}

// requestFailed logs an error that a request was answered 500 or 503 for.
func (s *server) requestFailed(ctx context.Context, err error) {
	s.log.LogAttrs(ctx, slog.LevelError, "request failed",
		slog.String("correlation_id", tracker.CorrelationID(ctx)),
		slog.String("err", err.Error()))
}
