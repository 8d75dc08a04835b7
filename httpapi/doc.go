// Package httpapi serves the status of background tasks over plain
// [net/http]: a status endpoint that clients poll, long-poll or stream, a
// helper for the response that hands out its URL, a correlation-id
// middleware, and a Go client.
//
// A service mounts the handler on any pattern, naming the wildcard that
// holds the task id, and points clients at it when it queues work:
//
//	const pattern = "GET /process/document/{document_id}/status"
//	statusPath, err := httpapi.ParseStatusPath(pattern)
//	...
//	mux.Handle(pattern, httpapi.StatusHandler(tr.Store(),
//		httpapi.WithPathValue(statusPath.Wildcard()),
//		httpapi.WithIDField("document_id")))
//	mux.HandleFunc("POST /process/document", func(w http.ResponseWriter, r *http.Request) {
//		// tr.Create(r.Context(), id, steps...), start the work, then:
//		httpapi.WriteSubmitted(w, statusPath.URL(id), response)
//	})
//	http.ListenAndServe(addr, httpapi.CorrelationHandler(mux))
//
// # Status document
//
// [StatusHandler] answers 200 with a JSON object that keeps the origin
// service's field names:
//
//	{"document_id":"doc-123","correlation_id":"abc-456-def","status":"failed",
//	 "started_at":"2025-11-12T10:00:00Z","completed_at":"2025-11-12T10:00:03.128Z",
//	 "error_message":"Vectorization failed: Connection refused",
//	 "error_details":{"exception_type":"ConnectionError"},
//	 "entities_extracted":42,"vector_indexed":false,
//	 "pipeline_steps":{"file_node_creation":"success","embedding_generation":"failed"},
//	 "steps":[{"name":"file_node_creation","status":"success","started_at":"...",
//	           "completed_at":"...","error":null,"attempt":1}, ...],
//	 "progress":{"done":1,"total":2,"message":"embedding"},
//	 "attempt":1,"version":9,
//	 "created_at":"2025-11-12T09:59:59.5Z","updated_at":"2025-11-12T10:00:03.128Z",
//	 "lease_until":null}
//
// The id field is named by [WithIDField] ("task_id" by default). Times are
// RFC 3339 in UTC to the millisecond, trailing zeros of the fraction left
// out as the origin does. Absent values are null: correlation_id,
// started_at, completed_at, error_message, error_details, progress,
// lease_until, and a step's times and error. lease_until is when the
// lease of a task's work ends ([tracker.WithLease]): a task that has not
// ended by then was abandoned ([store.State.Stale]). The task's result fields ([store.State.Result])
// are fields of the document itself, in name order after error_details; a
// result field named like a field of the document (or like the id field)
// is not served, so no result can change what the document says about the
// task. pipeline_steps maps each step's name to its status; steps lists
// the steps in order with their times. [WithRender] replaces the document
// with any JSON a service's contract needs.
//
// # Answers and headers
//
//   - 200: the document, as application/json.
//   - 304: If-None-Match names the task's current version.
//   - 400: the id is invalid ([store.ValidateID]), or so is the wait or
//     version parameter.
//   - 404: no task has the id, or the authorization hook refused it.
//   - 503: the store is unavailable ([store.ErrUnavailable]), or too many
//     requests wait for changes (see Limits); with Retry-After.
//   - 405: a method other than GET or HEAD, if the pattern allows one.
//   - 500: anything else, such as a corrupt stored task.
//
// Error answers are RFC 9457 problem documents ([Problem], as
// application/problem+json) whose text never includes an internal error;
// errors behind 500 and 503 go to the error handler ([WithErrorHandler]).
// Every answer carries Cache-Control: no-store and X-Content-Type-Options:
// nosniff. 200 and 304 carry the version as a strong ETag ("v12"), and
// Retry-After ([WithRetryAfter]) while the task has not ended, the
// polling interval the server asks for.
//
// The handler renders each version of a task once and serves the same
// bytes to every client that asks for it (see [WithRender]), keeping up to
// 8 MB of renderings of recently served tasks.
//
// # Long polling
//
// A request with ?wait=30s (a Go duration or a whole number of seconds, capped
// by [WithMaxWait]) that names the version the client has, with ?version=12
// or If-None-Match: "v12", is answered as soon as the task's version
// differs or the task has ended, and otherwise when the wait is over: 304
// if the client sent If-None-Match, else 200 with the unchanged state. A
// request that names no version, or names a version other than the
// current one, is answered at once. The wait follows the task through
// the store's [store.Watcher], so it sees changes written by any process;
// with a store that is not a Watcher the request is answered at once.
// When the client goes away the wait ends and its watch is freed.
//
// # Server-Sent Events
//
// A GET whose Accept header lists text/event-stream (with a quality above
// zero, whatever else it lists) is answered with an event stream
// (the push the origin planned instead of polling). Each state is one
// event whose id is the version and whose data is the status document on
// one line:
//
//	retry: 1000
//
//	id: 7
//	event: status
//	data: {"task_id":"doc-123",...,"version":7,...}
//
// The stream starts with the current state, sends one event per change,
// in version order (a slow reader may skip versions but never sees an
// older one), and ends after the event of a terminal state. A client that
// reconnects with Last-Event-ID gets only states newer than it names; if
// it already has the final state it is answered 204 No Content, which
// tells a browser's EventSource to stop reconnecting. Comment lines
// (": heartbeat") are sent when nothing else was for [WithHeartbeat], so
// that proxies keep the stream open. A stream also ends when the task is
// deleted or expires, or the store fails; a client that reconnects is then
// told why. With a store that is not a Watcher, a stream sends the current
// state and ends, and an EventSource polls by reconnecting.
//
// # Limits
//
// A request that waits for changes (a long poll or an event stream) holds
// a watch on the store, which for a networked store may be a connection,
// for as long as it waits. The handler bounds them:
//
//   - at most [WithMaxWatchers] requests wait at once (1000 by default);
//     beyond, 503 with Retry-After.
//   - a long poll waits at most [WithMaxWait] (60 seconds by default).
//   - each event, and the answer to a long poll after its wait, must be
//     written within [WithWriteTimeout] (10 seconds by default), through
//     [http.ResponseController.SetWriteDeadline]: a client that stops
//     reading is cut off, and its stream ends. The long poll's deadline
//     replaces the server's WriteTimeout for that request.
//   - a stream of a task that never ends lasts until the task expires from
//     the store.
//
// # Authorization
//
// [WithAuthorize] sets a check of each request against each state it
// would see, so that a multi-tenant service can keep one tenant's tasks
// from another. A refusal is answered 404 with the body of an unknown
// task, so ids cannot be probed.
//
// # Submission
//
// [ParseStatusPath] turns the handler's pattern into task status URLs, and
// [WriteSubmitted] writes the origin's submission answer (200 with the
// service's fields and status_url); [WriteAccepted] writes the
// long-running-operation form (202 Accepted, Location and Retry-After).
//
// # Correlation ids
//
// [CorrelationHandler] takes a request's X-Correlation-ID (or
// X-Request-ID), or makes one, echoes it in the response and puts it in
// the request's context, where the [tracker.Tracker] records it with the
// tasks the request creates; the status document then shows it. Keep it
// for background work with [context.WithoutCancel].
//
// # Client
//
// [Client] gets a status by URL and waits for a task to end, long-polling
// and honouring Retry-After, within a context's deadline; it gives up on
// a task whose lease ended first ([ErrAbandoned]).
package httpapi
