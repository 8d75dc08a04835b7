// Docservice is the document processing service of the origin write-up
// ("Background Task Status Tracking"), rebuilt with the taskstatus packages.
//
// POST /process/document accepts a document, records its task as pending,
// starts a five-step pipeline in the background and answers at once with
// a status_url. GET /process/document/{document_id}/status serves the task's
// state as the origin's status document, and also answers long polls
// (?wait=30s&version=N) and Server-Sent Events (Accept: text/event-stream).
// GET /process/documents lists the documents' tasks, newest first, a page
// at a time, found by status, project (label=project_id:P) and creation
// time; GET /process/documents/counts counts them by status (see the
// httpapi package's ListHandler and CountsHandler). POST
// /process/document/{document_id}/cancel cancels a document's task, its work
// wherever it runs, and POST /process/document/{document_id}/retry runs an
// ended one again as a new attempt. GET /metrics serves the service's
// metrics in the Prometheus text format (see the otelstatus package), and
// grafana-dashboard.json is a Grafana dashboard of them. OTLP export is not
// built in: the service logs a warning if OTEL_EXPORTER_OTLP_ENDPOINT asks
// for it.
// /dashboard/ serves web pages that find, watch, cancel and retry documents
// (httpapi.DashboardHandler).
//
// Usage:
//
//	go run ./examples/docservice [flags]
//
// The flags are:
//
//	-addr string
//		address to listen on (env ADDR, or PORT; default ":8053")
//	-delay-scale float
//		factor applied to the simulated work of each step: 1 takes about
//		3 seconds a document, 0 none (env DELAY_SCALE; default 1)
//	-shutdown-timeout duration
//		how long in-flight tasks may go on after SIGINT or SIGTERM before
//		they are canceled (env SHUTDOWN_TIMEOUT; default 10s)
//	-lease duration
//		how long a task's lease lasts: a task whose process stops renewing
//		it (the process died) is shown abandoned, and can be submitted
//		again (env TASK_LEASE; default 30s; 0 keeps no lease)
//	-rescue-every duration
//		how often tasks whose process died (their lease ended a tenth of
//		a lease ago) are looked for and failed with the exception type
//		TaskAbandoned (env RESCUE_EVERY; default 10s; 0 turns it off)
//	-log-level level
//		debug, info, warn or error (env LOG_LEVEL; default info)
//	-log-format text|json
//		format of the logs written to stderr (env LOG_FORMAT; default text)
//
// Tasks are kept in PostgreSQL if DATABASE_URL names a database, such as
// postgres://localhost:5432/app, with the history of their transitions, in
// the schema TASKSTATUS_SCHEMA (default "taskstatus"), whose tables the
// service creates or updates at start-up; a database that does not answer
// then stops the service with an error. Otherwise they are kept in memory
// unless VALKEY_URL (or REDIS_URL) names a Redis or Valkey server, such as
// redis://localhost:6379/0, and ENABLE_CACHE is not "false";
// TASKSTATUS_PREFIX sets the prefix of the Redis keys. If Redis does not
// answer at start-up, the service says so and keeps tasks in memory.
// DATABASE_URL wins when both it and VALKEY_URL are set.
//
// The service prints "listening on ADDR" on stdout once it accepts
// connections, with the address it is bound to (useful with -addr :0).
// A document whose metadata holds {"simulate_failure": "STEP"} fails at
// that step on its first attempt, to show the failed status document for
// real, and a retry's recovery. A document
// submitted again once its task has ended, or was abandoned, is processed
// again as a new attempt; one still being processed is refused with 409.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal stops the process at once
	}()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "docservice:", err)
		os.Exit(1)
	}
}

// run runs the service with the command-line arguments args and the
// environment getenv until ctx is done, then shuts it down gracefully.
// It writes the bound address to stdout and its logs to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)

	st, closeStore, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeStore()

	warnOTLP(logger, getenv)
	s, err := newServer(st, logger, cfg, nil)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "delay_scale", cfg.delayScale)
	if _, err := fmt.Fprintf(stdout, "listening on %s\n", ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	return s.serve(ctx, ln)
}
