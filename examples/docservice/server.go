package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/otelstatus"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// statusPattern is the pattern of the status endpoint, which names the
// task id document_id.
const statusPattern = "GET /process/document/{document_id}/status"

// The patterns of the endpoints that list the documents' tasks and count
// them by status, and of those that cancel and retry a document's task.
const (
	listPattern   = "GET /process/documents"
	countsPattern = "GET /process/documents/counts"
	cancelPattern = "POST /process/document/{document_id}/cancel"
	retryPattern  = "POST /process/document/{document_id}/retry"
)

// dashboardPrefix is where the dashboard's pages are served.
const dashboardPrefix = "/dashboard"

// The patterns of the WebSocket endpoints: one that follows a document's
// task, and one on which a client subscribes to several.
const (
	wsPattern     = "GET /process/document/{document_id}/ws"
	wsManyPattern = "GET /process/documents/ws"
)

// Every task of the service is of this kind, labeled with its document's
// project.
const (
	taskKind     = "document"
	projectLabel = "project_id"
)

// taskTTL is how long a task is kept after its last change, as the origin
// does.
const taskTTL = 24 * time.Hour

// server is the document service: its tracker, the runner of its
// pipelines and its HTTP handlers.
type server struct {
	log             *slog.Logger
	store           store.Store  // seen through the telemetry
	lister          store.Lister // the store, which finds tasks
	tracker         *tracker.Tracker
	telemetry       *telemetry
	runner          *pipeline.Runner
	statusPath      httpapi.StatusPath
	delayScale      float64       // applied to the simulated work of each step
	shutdownTimeout time.Duration // how long in-flight tasks may go on at shutdown
	lease           time.Duration // renewed while a task is worked on (tracker.WithLease)
	rescueEvery     time.Duration // how often abandoned tasks are failed; 0: never
}

// newServer returns a server that tracks tasks in st with the lease of
// cfg, and sends its spans to tp (nowhere if tp is nil). It does not own
// st, which must be a store.Lister: the server lists and counts
// documents, serves the dashboard and rescues abandoned ones.
func newServer(st store.Store, logger *slog.Logger, cfg config, tp trace.TracerProvider) (*server, error) {
	tel, err := newTelemetry(tp)
	if err != nil {
		return nil, err
	}
	st = tel.Store(st)
	lister, ok := st.(store.Lister)
	if !ok {
		return nil, fmt.Errorf("the store (%T) cannot list tasks", st)
	}
	s := &server{
		lister:          lister,
		rescueEvery:     cfg.rescueEvery,
		log:             logger,
		store:           st,
		telemetry:       tel,
		runner:          pipeline.NewRunner(),
		delayScale:      cfg.delayScale,
		shutdownTimeout: cfg.shutdownTimeout,
		lease:           cfg.lease,
	}
	s.tracker, err = tracker.New(st,
		tracker.WithTTL(taskTTL),
		tracker.WithLease(cfg.lease),
		tracker.WithErrorHandler(s.trackingFailed),
		tracker.WithObserver(tel.Observe),
		tracker.WithObserver(otelstatus.LogEvents(logger)))
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
// task to change (long polls, event streams) are answered at once when
// stopping is closed, and WebSockets are closed.
func (s *server) handler(stopping <-chan struct{}) (http.Handler, error) {
	statusOpts := []httpapi.Option{
		httpapi.WithPathValue(s.statusPath.Wildcard()),
		httpapi.WithIDField("document_id"),
		httpapi.WithErrorHandler(s.requestFailed),
		httpapi.WithShutdown(stopping),
	}
	status, err := httpapi.StatusHandler(s.store, statusOpts...)
	if err != nil {
		return nil, err
	}
	ws, err := httpapi.WebSocketHandler(s.store, statusOpts...)
	if err != nil {
		return nil, err
	}
	findOpts := []httpapi.Option{httpapi.WithIDField("document_id"), httpapi.WithErrorHandler(s.requestFailed)}
	actOpts := append([]httpapi.Option{httpapi.WithPathValue(s.statusPath.Wildcard())}, findOpts...)
	cancel, err := httpapi.CancelHandler(s.tracker, s.statusPath, actOpts...)
	if err != nil {
		return nil, err
	}
	retry, err := httpapi.RetryHandler(s.tracker, s.statusPath, s.restart, actOpts...)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /process/document", s.submit)
	mux.Handle(statusPattern, status)
	mux.Handle(wsPattern, ws)
	mux.Handle(wsManyPattern, ws)
	mux.Handle(cancelPattern, cancel)
	mux.Handle(retryPattern, retry)
	mux.Handle(metricsPattern, s.telemetry.metrics)
	list, err := httpapi.ListHandler(s.lister, findOpts...)
	if err != nil {
		return nil, err
	}
	counts, err := httpapi.CountsHandler(s.lister, findOpts...)
	if err != nil {
		return nil, err
	}
	dash, err := httpapi.DashboardHandler(s.tracker, s.lister, s.statusPath, s.restart, findOpts...)
	if err != nil {
		return nil, err
	}
	mux.Handle(listPattern, list)
	mux.Handle(countsPattern, counts)
	mux.Handle(dashboardPrefix+"/", http.StripPrefix(dashboardPrefix, dash))
	return httpapi.CorrelationHandler(s.telemetry.Handler(mux)), nil
}

// rescue fails the tasks whose process died, every rescueEvery, until ctx
// is done (see tracker.Tracker.Rescue). A task is rescued a tenth of a
// lease after its lease ended: the grace lets a worker whose renewal is
// late, or whose clock is behind the rescuer's, keep its task.
func (s *server) rescue(ctx context.Context) {
	if s.rescueEvery == 0 || s.lease == 0 {
		return
	}
	if err := s.tracker.Rescue(ctx, s.rescueEvery, s.lease/10); err != nil && ctx.Err() == nil {
		s.log.Error("rescuing abandoned tasks stopped", "err", err)
	}
}

// serve answers requests on ln until ctx is done, then shuts down: it
// stops accepting requests, answers those that wait for changes with the
// state at hand, lets the others finish and lets the tasks in flight
// finish for up to the shutdown timeout, after which it cancels them, so
// that each is recorded as finished or canceled and none is left running;
// what the store did not take yet is written within the same timeout. ln
// is closed on return.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	stopping := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopping) }) }
	defer stop()
	h, err := s.handler(stopping)
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	rctx, stopRescue := context.WithCancel(ctx)
	rescued := make(chan struct{})
	go func() {
		defer close(rescued)
		s.rescue(rctx)
	}()
	defer func() {
		stopRescue()
		<-rescued
	}()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
		s.log.Error("serving failed", "err", err)
	case <-ctx.Done():
		s.log.Info("shutting down", "timeout", s.shutdownTimeout)
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	stop() // before the watches end with the tracker, so that clients hear why
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
	if cerr := s.tracker.Close(sctx); cerr != nil {
		s.log.Error("task changes the store did not take were dropped", "err", cerr)
	}
	if terr := s.telemetry.shutdown(sctx); terr != nil {
		s.log.Warn("stopping the metrics", "err", terr)
	}
	s.log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// heartbeat returns how often a long step renews its task's lease: three
// times a lease, so that a renewal that is late or lost does not make the
// task look abandoned. 0 when tasks hold no lease.
func (s *server) heartbeat() time.Duration {
	return s.lease / 3
}

// trackingFailed logs an error of the tracker. The refusals the submit
// handler expects and answers (the document exists, or is still being
// processed) are logged at debug level.
func (s *server) trackingFailed(ctx context.Context, err error) {
	level := slog.LevelError
	if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrInvalidTransition) {
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
