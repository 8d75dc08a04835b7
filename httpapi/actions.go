package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// maxReasonBytes bounds the reason of a cancel request, and maxActionBody
// the body that holds it.
const (
	maxReasonBytes = 1 << 10
	maxActionBody  = 4 << 10
)

// action is what the cancel and retry handlers share.
type action struct {
	config
	tr     *tracker.Tracker
	status StatusPath
	// csrf refuses the requests a browser sends from a page of another
	// site: a form there must not cancel or retry a task with the user's
	// cookies. Clients that are not browsers send none of the headers it
	// reads, and pass.
	csrf *http.CrossOriginProtection
}

// newAction returns the action of the handler named name, or the error of
// its arguments.
func newAction(name string, tr *tracker.Tracker, status StatusPath, opts []Option) (action, error) {
	if tr == nil {
		return action{}, fmt.Errorf("httpapi: %s: nil tracker", name)
	}
	if status.wildcard == "" {
		return action{}, fmt.Errorf("httpapi: %s: zero StatusPath: make one with ParseStatusPath", name)
	}
	c, err := newConfig(opts)
	if err != nil {
		return action{}, err
	}
	return action{config: c, tr: tr, status: status, csrf: http.NewCrossOriginProtection()}, nil
}

// CancelHandler returns a handler that asks for the cancellation of the
// task named by the request's path value (see [WithPathValue]), from any
// process: a POST, whose body may be a JSON object with the reason,
// {"reason": "wrong file"} (at most 1 KB), records the request with
// [tracker.RequestCancel]; the work running the task, wherever it runs,
// stops and records the task canceled. It answers:
//
//   - 202 Accepted with the task's status URL in Location (built with
//     status) and in the body's status_url, once the request is recorded,
//     or was already: asking twice is the same as asking once;
//   - 409 Conflict with a problem saying why if the task has ended;
//   - 404 for an unknown task, or one the authorization hook refuses;
//   - 400 for an invalid id or body, 405 for a method other than POST,
//     503 with Retry-After if the store is unavailable;
//   - 403 for a request a browser sent from a page of another site
//     ([http.CrossOriginProtection]), so that a form there cannot cancel
//     a task with a user's cookies; clients that are not browsers pass.
//
// It takes the options of [StatusHandler]: WithPathValue, WithIDField,
// WithAuthorize, WithRetryAfter and WithErrorHandler concern it.
func CancelHandler(tr *tracker.Tracker, status StatusPath, opts ...Option) (http.Handler, error) {
	a, err := newAction("CancelHandler", tr, status, opts)
	if err != nil {
		return nil, err
	}
	return &cancelHandler{a}, nil
}

// RetryHandler returns a handler that starts a new attempt of the task
// named by the request's path value (see [WithPathValue]): a POST records
// it with [tracker.Retry], then calls start with the state of the attempt
// that ended, whose kind, labels and results tell the service what work
// to run again. start must queue or start the work and return; the library
// does not own the queue. It answers:
//
//   - 202 Accepted with the task's status URL in Location (built with
//     status) and in the body's status_url;
//   - 409 Conflict with a problem saying why if the task is pending or
//     running, and not abandoned;
//   - 503 with Retry-After if start fails: the new attempt is then
//     recorded canceled with start's error, which goes to the error
//     handler; and if the store is unavailable;
//   - 404 for an unknown task, or one the authorization hook refuses;
//   - 400 for an invalid id, 405 for a method other than POST, 403 for a
//     request from a page of another site, as CancelHandler.
//
// It takes the options of [CancelHandler].
func RetryHandler(tr *tracker.Tracker, status StatusPath, start func(ctx context.Context, ended store.State) error, opts ...Option) (http.Handler, error) {
	if start == nil {
		return nil, errors.New("httpapi: RetryHandler: nil start function")
	}
	a, err := newAction("RetryHandler", tr, status, opts)
	if err != nil {
		return nil, err
	}
	return &retryHandler{a, start}, nil
}

type cancelHandler struct{ action }

// ServeHTTP implements [http.Handler].
func (h *cancelHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.sameSite(w, r) {
		return
	}
	st, ok := h.task(w, r)
	if !ok {
		return
	}
	reason, problem := readReason(r)
	if problem != "" {
		writeProblem(w, r, http.StatusBadRequest, problem)
		return
	}
	h.done(w, r, st.ID, h.cancel(r, st.ID, reason))
}

type retryHandler struct {
	action
	start func(context.Context, store.State) error
}

// ServeHTTP implements [http.Handler].
func (h *retryHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.sameSite(w, r) {
		return
	}
	st, ok := h.task(w, r)
	if !ok {
		return
	}
	h.done(w, r, st.ID, h.retry(r, st, h.start))
}

// sameSite reports whether r may act: it did not come from a page of
// another site (see csrf). It answers r with 403 if not.
func (a *action) sameSite(w http.ResponseWriter, r *http.Request) bool {
	if a.csrf.Check(r) != nil {
		writeProblem(w, r, http.StatusForbidden, "The request came from a page of another site.")
		return false
	}
	return true
}

// cancel records the request r makes to cancel task id for reason. The
// error is a [refusal] if the task has ended.
func (a *action) cancel(r *http.Request, id, reason string) error {
	err := a.tr.Apply(r.Context(), id, tracker.RequestCancel(reason))
	if errors.Is(err, store.ErrTerminal) {
		return &refusal{http.StatusConflict, "The task has ended: it cannot be canceled."}
	}
	return err
}

// retry starts the new attempt of task st that r asks for and hands it to
// start. The error is a [refusal] if the task has not ended, or if start
// fails: the attempt is then recorded canceled, and start's error goes to
// the error handler.
func (a *action) retry(r *http.Request, st store.State, start func(context.Context, store.State) error) error {
	ctx := r.Context()
	err := a.tr.Apply(ctx, st.ID, tracker.Retry())
	if errors.Is(err, store.ErrInvalidTransition) {
		return &refusal{http.StatusConflict, "The task has not ended: only an ended or abandoned task is retried."}
	}
	if err != nil {
		return err
	}
	if err := start(ctx, st); err != nil {
		// The attempt will not run: it must not stay pending.
		_ = a.tr.Apply(context.WithoutCancel(ctx), st.ID, tracker.Cancel(fmt.Errorf("not started: %w", err)))
		a.report(r, fmt.Errorf("start task %q: %w", st.ID, err))
		return &refusal{http.StatusServiceUnavailable, "The task could not be started. Retry later."}
	}
	return nil
}

// task reads the task that r names, if the method is POST and the
// authorization hook lets r see it; otherwise it answers r and reports
// false.
func (a *action) task(w http.ResponseWriter, r *http.Request) (store.State, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeProblem(w, r, http.StatusMethodNotAllowed, "This is done with POST.")
		return store.State{}, false
	}
	st, err := a.get(r, r.PathValue(a.pathValue))
	if err != nil {
		a.fail(w, r, err)
		return store.State{}, false
	}
	return st, true
}

// get reads task id for r. A task the authorization hook does not let r
// see is not found: the error wraps [store.ErrNotFound].
func (a *action) get(r *http.Request, id string) (store.State, error) {
	st, err := a.tr.Get(r.Context(), id)
	if err == nil && a.authorize != nil && a.authorize(r, st) != nil {
		return store.State{}, fmt.Errorf("task %q refused by the authorization hook: %w", id, store.ErrNotFound)
	}
	return st, err
}

// done answers r for the outcome err of the action on task id: 202 with
// the status's URL, or the error.
func (a *action) done(w http.ResponseWriter, r *http.Request, id string, err error) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := WriteAccepted(w, a.status.URL(id), a.retryAfter, map[string]string{a.idField: id}); err != nil {
		a.report(r, err)
	}
}

// readReason reads the reason of a cancel request from the body of r,
// which may be empty. If the body is invalid it returns the detail of the
// problem, for the client.
func readReason(r *http.Request) (reason, problem string) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxActionBody+1))
	switch {
	case err != nil:
		return "", "The body could not be read."
	case len(b) > maxActionBody:
		return "", fmt.Sprintf("The body is larger than %d bytes.", maxActionBody)
	case len(b) == 0:
		return "", ""
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return "", `The body must be a JSON object such as {"reason": "wrong file"}, or empty.`
	}
	if len(body.Reason) > maxReasonBytes {
		return "", fmt.Sprintf("The reason is longer than %d bytes.", maxReasonBytes)
	}
	return body.Reason, ""
}
