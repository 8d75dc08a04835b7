package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// stream answers r with a Server-Sent Events stream of the states of task
// st.ID newer than the client's Last-Event-ID, starting from st, until the
// task ends, the client goes, or a write fails or times out.
func (h *handler) stream(w http.ResponseWriter, r *http.Request, st store.State) {
	last := lastEventID(r)
	if st.Status.Terminal() && st.Version <= last {
		// The client has the final state. 204 tells an EventSource to
		// stop reconnecting.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !h.acquire() {
		h.unavailable(w, r, detailBusy)
		return
	}
	defer h.release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // frees the watch however the stream ends
	var states <-chan store.State
	if h.watcher != nil && !st.Status.Terminal() {
		var err error
		if states, err = h.watcher.Watch(ctx, st.ID); err != nil {
			h.fail(w, r, err)
			return
		}
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	w.WriteHeader(http.StatusOK)
	ew := &eventWriter{w: w, rc: http.NewResponseController(w), timeout: h.writeTimeout}
	// An EventSource reconnects this long after the stream ends early.
	ew.buf = append(ew.buf, "retry: "...)
	ew.buf = strconv.AppendInt(ew.buf, h.retry*1000, 10)
	ew.buf = append(ew.buf, "\n\n"...)
	if st.Version > last {
		if h.send(ctx, ew, st) != nil {
			return
		}
		last = st.Version
	} else if ew.flush(nil) != nil {
		return
	}
	if states == nil {
		// The task has ended; or the store cannot watch, and a client
		// that reconnects polls.
		return
	}

	tick, stop := h.ticker()
	defer stop()
	for {
		select {
		case s, ok := <-states:
			if !ok {
				// The task ended, was deleted or expired, or the store
				// failed: a client that reconnects learns which.
				return
			}
			if s.Version <= last {
				continue
			}
			if !h.allowed(r, s) || h.send(ctx, ew, s) != nil || s.Status.Terminal() {
				return
			}
			last = s.Version
		case <-tick:
			ew.buf = append(ew.buf, ": heartbeat\n\n"...)
			if ew.flush(nil) != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// send writes st as a "status" event whose id is its version.
func (h *handler) send(ctx context.Context, ew *eventWriter, st store.State) error {
	doc, err := h.render(st)
	if err != nil {
		h.onError(ctx, fmt.Errorf("httpapi: event stream: %w", err))
		return err
	}
	ew.buf = append(ew.buf, "id: "...)
	ew.buf = strconv.AppendInt(ew.buf, st.Version, 10)
	ew.buf = append(ew.buf, "\nevent: status\ndata: "...)
	return ew.flush(doc.body)
}

// ticker returns the heartbeat channel and the function that stops it; a
// nil channel if heartbeats are off.
func (h *handler) ticker() (<-chan time.Time, func()) {
	if h.heartbeat <= 0 {
		return nil, func() {}
	}
	return h.newTicker(h.heartbeat)
}

// lastEventID returns the version named by the Last-Event-ID header, or 0
// if there is none. An id this handler did not send counts as none.
func lastEventID(r *http.Request) int64 {
	v, err := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// eventWriter writes the events of one stream, each under a write deadline.
type eventWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte // the start of the next write
}

// flush writes buf, then data (shared, not copied) and the blank line that
// ends an event if data is not nil, and flushes it to the client within
// the write timeout.
func (e *eventWriter) flush(data []byte) error {
	if e.timeout > 0 {
		err := e.rc.SetWriteDeadline(time.Now().Add(e.timeout))
		if err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	_, err := e.w.Write(e.buf)
	if err == nil && data != nil {
		if _, err = e.w.Write(data); err == nil {
			_, err = e.w.Write(append(e.buf[:0], "\n\n"...))
		}
	}
	e.buf = e.buf[:0]
	if err != nil {
		return err
	}
	return e.rc.Flush()
}
