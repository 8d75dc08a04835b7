// Package httpapi serves the status of background tasks over plain
// [net/http]: a status endpoint that clients poll, long-poll or stream,
// endpoints that list and count tasks and that cancel and retry them, a
// dashboard of web pages that do the same for people, a helper for the
// response that hands out a status URL, a correlation-id middleware, and
// a Go client.
//
// A service mounts the handler on any pattern, naming the wildcard that
// holds the task id, and points clients at it when it queues work:
//
//	const pattern = "GET /process/document/{document_id}/status"
//	statusPath, err := httpapi.ParseStatusPath(pattern)
//	...
//	status, err := httpapi.StatusHandler(mem, // the store the tracker writes to
//		httpapi.WithPathValue(statusPath.Wildcard()),
//		httpapi.WithIDField("document_id"),
//		httpapi.WithShutdown(shuttingDown))
//	...
//	mux.Handle(pattern, status)
//	mux.HandleFunc("POST /process/document", func(w http.ResponseWriter, r *http.Request) {
//		// tr.Apply(r.Context(), id, tracker.Create(steps...)), start the work, then:
//		httpapi.WriteSubmitted(w, statusPath.URL(id), response)
//	})
//	http.ListenAndServe(addr, httpapi.CorrelationHandler(mux))
//
// # Status document
//
// [StatusHandler] answers 200 with a JSON object, a [Document], that
// keeps the origin service's member names:
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
//	 "lease_until":null,"abandoned":false,"incarnation":"3k1x0bq7f2h9",
//	 "kind":"document","labels":{"project_id":"p1"},
//	 "cancel_requested_at":null,"cancel_reason":null,"previous_attempts":[]}
//
// The id member is named by [WithIDField] ("task_id" by default). Times
// are RFC 3339 in UTC to the millisecond, trailing zeros of the fraction
// left out as the origin does. Absent values are null: correlation_id,
// started_at, completed_at, error_message, error_details, progress,
// lease_until, incarnation, kind, labels, cancel_requested_at,
// cancel_reason, and a step's times and error. The task's
// result fields ([store.State.Result]) are members of the document
// itself, in name order after error_details; a result field named like
// another member is not served, so no result can change what the
// document says about the task. pipeline_steps maps each step's name to
// its status; steps lists the steps in order with their times.
// incarnation differs each time the id is created: a document of another
// incarnation is of another task that had the same id. [Document] lists
// the members; [WithRender] replaces the document with any JSON a
// service's contract needs.
//
// # Leases and abandoned tasks
//
// lease_until is when the lease of the task's work ends
// ([tracker.WithLease]): the work renews it with every write, and with
// [tracker.Heartbeat] while it has nothing else to record. abandoned is
// true when the task has not ended and its lease has, judged by the
// server's clock ([store.State.Abandoned]): the process doing the work
// most likely died, and the task will not end unless it is retried
// ([tracker.Retry]). A client tells a live task from an abandoned one by
// the abandoned member, without comparing its clock with anyone's; on the
// reads of a live task, lease_until moves forward.
//
// A renewal writes a new version that changes only version and
// lease_until. It is not a change for clients: it answers no long poll and
// sends no event, as the next sections say. The document of a task judged
// abandoned has an ETag of its own, so that no 304 hides the abandonment.
//
// # Answers and headers
//
//   - 200: the document, as application/json.
//   - 304: If-None-Match names the document's ETag.
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
// nosniff. 200 and 304 carry a strong ETag: the version, "v12", followed
// by "a" if the document says the task was abandoned, "v12a". While the
// task has not ended they carry Retry-After ([WithRetryAfter]), the
// polling interval the server asks for.
//
// The handler renders each document once and serves the same bytes to
// every client that asks for it (see [WithRender]), keeping up to 8 MB of
// renderings of recently served tasks.
//
// # Long polling
//
// A request with ?wait=30s (a Go duration or a whole number of seconds,
// capped by [WithMaxWait]) that names the document the client has, with
// ?version=12 or If-None-Match: "v12", waits until there is something new
// to tell it: a change of the task other than a lease renewal, its end,
// or the end of its lease (the task is then abandoned). ?version=12 names
// the document of version 12 that does not say the task was abandoned;
// If-None-Match names either. When the wait is over without news, the
// task is read again and the request is answered with it: 304 if the
// client sent If-None-Match that names its document, else 200. A request
// that names no document, or one other than the current one, or of a
// task that has ended, is answered at once.
//
// The wait follows the task through the store's [store.Watcher], so it
// sees changes written by any process; with a store that is not a Watcher
// the request is answered at once. Renewals are written quietly, and
// watchers are not told of them: when the lease it knows of ends, the
// handler reads the task again, and waits for the new lease's end if the
// lease was renewed meanwhile. When the client goes away the wait ends
// and its watch is freed; the client gets no answer.
//
// # Server-Sent Events
//
// A GET whose Accept header lists text/event-stream (with a quality above
// zero, whatever else it lists) is answered with an event stream (the
// push the origin planned instead of polling). Each document is one event
// whose id names it as the ETag does, without quotes and "v", and whose
// data is the document on one line:
//
//	retry: 1000
//
//	id: 7
//	event: status
//	data: {"task_id":"doc-123",...,"version":7,...}
//
// The stream starts with the current document and sends one event per
// change of the task, in version order (a slow reader may skip versions
// but never sees an older one), but none for a state that differs from
// the last one sent only in version and lease_until: a renewal. When the
// lease ends without a renewal, it sends the task's document that says it
// was abandoned ("id: 7a"), and goes on with the task's next changes. It
// ends after the event of a terminal state. A client that reconnects with
// Last-Event-ID gets only documents newer than the one it names; if it
// already has the final document it is answered 204 No Content, which
// tells a browser's EventSource to stop reconnecting. Comment lines
// (": heartbeat") are sent after [WithHeartbeat] without an event, so
// that proxies keep the stream open. A stream also ends, without an
// event, when the task is deleted or expires or the store fails; a client
// that reconnects is then told why. With a store that is not a Watcher, a
// stream sends the current document and ends, and an EventSource polls by
// reconnecting.
//
// # WebSocket
//
// [WebSocketHandler] pushes the same documents over a WebSocket, for
// front ends and gateways that speak WebSocket only, and for clients that
// follow many tasks on one connection. It follows tasks as an event
// stream does: the current document first, then one per change in version
// order (a slow reader may skip versions, never sees an older one, and
// holds no queue: it gets the latest state), none for a renewal, the
// document that says the task was abandoned when its lease ends, and
// nothing after the terminal state. Each document is a text message:
//
//	{"type":"status","id":"doc-123","event_id":"7","document":{"task_id":"doc-123",...}}
//
// whose event_id names the document as an event stream's id does ("7",
// "7a"). Mounted on a pattern that holds the task id's wildcard
// ("GET /process/document/{document_id}/ws"), a connection follows that
// task, from the document named by ?last_event_id=7 if given (only newer
// ones are sent), and takes no messages. Mounted on one without it
// ("GET /process/documents/ws"), it follows the tasks the client
// subscribes to, with messages of its own:
//
//	{"type":"subscribe","id":"doc-123","last_event_id":"7"}   last_event_id optional
//	{"type":"unsubscribe","id":"doc-123"}
//
// A subscription ends after the task's terminal state, or when it is
// unsubscribed; the id can then be subscribed to again. A status message
// being written when an unsubscribe comes may still arrive.
//
// Close codes and errors. A connection that follows the task of its URL
// is closed with 1000 (normal) after the terminal state, or at once if
// the client has it already; with 1001 (going away) when the service
// shuts down ([WithShutdown]), and the client reconnects later with the
// last event id it has; and otherwise with a code of 4000 plus the status
// code a status request would be answered with, and its detail as the
// reason:
//
//   - 4400: the id is invalid, or the client sent a message.
//   - 4404: no task has the id, or the authorization hook refused it, at
//     the start or at any later state; the reason is the same.
//   - 4503: the store is unavailable (the task cannot be read, or its
//     watch ended and it cannot be read again), or too many watch at
//     once (see Limits); reconnect later.
//   - 4500: anything else, such as a corrupt stored task.
//
// On a connection that follows several tasks, a subscription that ends
// early, or a message that is refused, is answered with an error message
// that carries the same code, and the connection stays open:
//
//	{"type":"error","id":"doc-123","code":4503,"detail":"The status store is unavailable. Retry later."}
//
// When the store ends a task's watch early, the task is read again: the
// client is told if it is gone or the store is down, and otherwise the
// task is followed on. Each followed task counts against
// [WithMaxWatchers]. The handler pings the client every [WithHeartbeat],
// and closes a connection whose pong does not come within
// [WithWriteTimeout]; each message must be written within it too, or the
// connection is closed. A client's messages are at most 4 KB. The
// handshake is refused (403) to a page of another origin than the
// request's host, unless [WithOrigins] allows it.
//
// # Shutdown
//
// A service that shuts down tells the handler so with [WithShutdown].
// From then on, a long poll is answered at once, those that wait as well
// as new ones, with the task read then: 200 with the document (or 304),
// or 503 with Retry-After if the store fails; never an empty answer. An
// event stream ends: the stream's end is clean, and an EventSource
// reconnects after its retry delay, to an instance that serves it. A new
// stream sends the current document and ends. Without WithShutdown, a
// server that cancels the contexts of its requests ends their waits as if
// their clients had gone: they get no answer.
//
// # Limits
//
// A request that waits for changes (a long poll, an event stream, or a
// task followed over a WebSocket) holds a watch on the store, which for a
// networked store may be a connection, for as long as it waits. The
// handler bounds them:
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
// # Finding tasks
//
// With a store that is a [store.Lister], [ListHandler] lists tasks and
// [CountsHandler] counts them, each mounted on any pattern:
//
//	GET /process/documents?status=failed&label=project_id:p1&page_size=2
//	{"tasks":[{"document_id":"doc-9",...},{"document_id":"doc-4",...}],
//	 "next_page_token":"AAAB..."}
//	GET /process/documents/counts?kind=document
//	{"counts":{"pending":3,"running":1,"success":120,"failed":12,"canceled":0},"total":136}
//
// The list's query parameters, each optional, narrow what it finds:
//
//   - status: a task status; repeated, any of them.
//   - kind: the task's kind ([store.State.Kind]).
//   - label: key:value, one of the task's labels ([store.State.Labels]).
//   - created_after, created_before: RFC 3339 times; tasks created at or
//     after the first, and before the second.
//   - lease_ended_before: an RFC 3339 time; tasks that have not ended and
//     whose lease ended before it (abandoned ones).
//   - page_size: 1 to 1000 tasks a page, 50 by default.
//   - page_token: the next_page_token of the page before.
//
// Tasks are listed newest first, by creation time then id, as status
// documents; next_page_token is absent on the last page. Across the
// pages of one query no task that did not change meanwhile is listed
// twice or skipped; a token is refused with other parameters. The counts
// take kind and label only, and count every status.
//
// A parameter given an invalid value, or twice (but status), is answered
// 400 with a problem whose detail names it; a store that is down, 503
// with Retry-After; a method other than GET or HEAD, 405. Other
// parameters are ignored. The Client reads them with [Client.List] and
// [Client.Counts].
//
// # Cancel and retry
//
// [CancelHandler] and [RetryHandler], mounted on any pattern with the task
// id as a path wildcard, act on a task from any process:
//
//	POST /process/document/doc-123/cancel   {"reason": "wrong file"}
//	POST /process/document/doc-123/retry
//
// A cancel request is recorded in the store ([tracker.RequestCancel]);
// the work running the task, in whatever process, learns of it, stops and
// records the task canceled; a pending task is canceled at once. Asking
// twice is the same as asking once. A retry starts a new attempt of an
// ended or abandoned task ([tracker.Retry]), whose earlier outcomes stay
// in previous_attempts, and hands it to the service's start function:
// the library does not own the queue. Both answer 202 Accepted with the
// status URL in Location; 409 with a problem saying why when the task's
// state forbids it (a cancel of an ended task, a retry of one that runs);
// 404 for an unknown task or one the authorization hook refuses; 503 with
// Retry-After when the store is down. [Client.Cancel] and [Client.Retry]
// call them.
//
// # Dashboard
//
// [DashboardHandler] serves web pages, mounted under any prefix, where an
// operator finds tasks by status, kind, label and creation time, counts
// them, opens a task to see its steps as a timeline, its error, results
// and attempts, watches it change live, and cancels or retries it:
//
//	dash, err := httpapi.DashboardHandler(tr, mem, statusPath, start, opts...)
//	...
//	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", dash))
//
// The pages are rendered on the server with [html/template] from files
// embedded in the package, work with JavaScript off, and load nothing
// from another host. The dashboard is part of this package rather than
// one of its own because it is these endpoints for people: it takes the
// same options, so the same authorization hooks keep a tenant to its own
// tasks, and it shares their reading of a list query, their checks and
// their cancel and retry, which a package of its own would have to copy
// or this one export. Its live updates are the status handler's event
// stream.
//
// # Options
//
// The handlers take options that each say which values they accept, and
// return the error of one given another value: [WithPathValue],
// [WithIDField], [WithRender], [WithAuthorize], [WithScope],
// [WithMaxWait], [WithHeartbeat], [WithWriteTimeout], [WithMaxWatchers],
// [WithRetryAfter], [WithErrorHandler], [WithClock], [WithShutdown] and
// [WithOrigins]. Each handler uses those that concern it and ignores the
// others, so a service can pass the same options to each.
//
// # Authorization
//
// [WithAuthorize] sets a check of each request against each state it
// would see, so that a multi-tenant service can keep one tenant's tasks
// from another. A refusal is answered 404 with the body of an unknown
// task, so ids cannot be probed; a list leaves the task out of its page.
// [WithScope] narrows the filter of each list and counts request, for
// instance to the caller's tenant's label, or refuses it (403). Counts
// are not checked task by task, so [CountsHandler] refuses WithAuthorize
// without WithScope. [DashboardHandler] applies both as the endpoints do,
// to its pages and its buttons; pass it the options of the endpoints.
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
// [Client] reads a task's [Document] by URL and waits for a task to end,
// long-polling and honouring Retry-After, within a context's deadline; it
// gives up on a task the server says was abandoned ([ErrAbandoned]). It
// iterates over the tasks a list handler finds, page after page, reads
// counts, and cancels and retries tasks. [Client.Follow] follows a task
// over a WebSocket, and [Client.FollowTasks] several on one connection,
// connecting again when the server goes away.
package httpapi
