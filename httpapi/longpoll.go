package httpapi

import (
	"context"
	"net/http"
	"time"
)

// waits reports whether a request for doc with q is a long poll that
// waits: it asks for a wait and names doc as the document it has, the
// task has not ended, the store can watch and the service does not shut
// down. Other requests are answered at once.
func (h *handler) waits(q query, doc Document) bool {
	return q.wait > 0 && h.watcher != nil && !doc.Status.Terminal() && q.known(doc) && !h.shuttingDown()
}

// longPoll waits up to q.wait for the client to be told of something new
// about the task of doc, the document it has: a change but a lease
// renewal, or the end of the lease. It returns the document to answer
// with, or false if the request has been answered (an error) or its
// client has gone.
//
// When the wait is over, the watch ends or the service shuts down, the
// answer is the task as read then.
func (h *handler) longPoll(w http.ResponseWriter, r *http.Request, doc Document, q query) (Document, bool) {
	if !h.acquire() {
		h.unavailable(w, r, detailBusy)
		return doc, false
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
	states, err := h.watcher.Watch(ctx, doc.ID)
	if err != nil && ctx.Err() == nil {
		h.fail(w, r, err)
		return doc, false
	}
	if err == nil {
		f := h.follow(states, doc)
		defer f.stop()
		switch why, err := f.next(ctx, nil); why {
		case wakeNews:
			if !h.allowed(r, f.sent.State) {
				writeProblem(w, r, http.StatusNotFound, detailNotFound)
				return doc, false
			}
			return f.sent, true
		case wakeFailed:
			h.fail(w, r, err)
			return doc, false
		}
	}
	return h.read(w, r, doc.ID)
}
