package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// longPoll waits up to q.wait for task st.ID to change from st, the state
// the client has, or to end. It returns the state to answer with, or false
// if the request has been answered (an error) or its client has gone.
//
// Without a Watcher it returns st at once.
func (h *handler) longPoll(w http.ResponseWriter, r *http.Request, st store.State, q query) (store.State, bool) {
	if h.watcher == nil {
		return st, true
	}
	if !h.acquire() {
		h.unavailable(w, r, detailBusy)
		return st, false
	}
	defer h.release()
	if h.writeTimeout > 0 {
		// The answer is written after the wait: make room for both,
		// whatever deadline the server set. Writers that cannot set
		// deadlines keep theirs.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(q.wait + h.writeTimeout))
	}

	ctx, cancel := context.WithTimeout(r.Context(), q.wait)
	defer cancel()
	states, err := h.watcher.Watch(ctx, st.ID)
	if err != nil {
		switch {
		case r.Context().Err() != nil:
			return st, false
		case ctx.Err() != nil:
			return st, true
		}
		h.fail(w, r, err)
		return st, false
	}
	for s := range states {
		if !q.known(s) || s.Status.Terminal() {
			return s, h.allowedOrNotFound(w, r, s)
		}
	}
	switch {
	case r.Context().Err() != nil:
		return st, false
	case ctx.Err() != nil:
		return st, true
	}
	// Watching stopped before the wait ended: the task was deleted or
	// expired, or the store failed. Read it again to say which.
	s, err := h.store.Get(r.Context(), st.ID)
	if err != nil {
		h.fail(w, r, err)
		return st, false
	}
	return s, h.allowedOrNotFound(w, r, s)
}

// allowedOrNotFound reports whether r may see st, answering 404 if not.
func (h *handler) allowedOrNotFound(w http.ResponseWriter, r *http.Request, st store.State) bool {
	if !h.allowed(r, st) {
		writeProblem(w, r, http.StatusNotFound, detailNotFound)
		return false
	}
	return true
}
