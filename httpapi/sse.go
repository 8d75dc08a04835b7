package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// stream answers r with a Server-Sent Events stream of the documents of
// the task of doc that are newer than the client's Last-Event-ID, starting
// from doc, until the task ends, the client goes, a write fails or times
// out, or the service shuts down.
func (h *handler) stream(w http.ResponseWriter, r *http.Request, doc Document) {
	last := lastEventID(r)
	if doc.Status.Terminal() && doc.Version <= last.version {
		// The client has the final document. 204 tells an EventSource
		// to stop reconnecting.
		noStore(w.Header())
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
	if h.watcher != nil && !doc.Status.Terminal() && !h.shuttingDown() {
		var err error
		if states, err = h.watcher.Watch(ctx, doc.ID); err != nil {
			h.fail(w, r, err)
			return
		}
	}

	ew := h.startStream(w)
	if last.olderThan(doc) {
		if h.send(r, ew, doc) != nil {
			return
		}
	} else if ew.flush(nil) != nil {
		return
	}
	if states == nil {
		// The task has ended; or the store cannot watch, or the
		// service shuts down, and a client that reconnects polls.
		return
	}
	h.relay(ctx, r, ew, h.follow(states, doc))
}

// startStream writes the header of an event stream, and returns its
// writer, which holds the stream's retry field.
func (h *handler) startStream(w http.ResponseWriter) *eventWriter {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	noStore(hdr)
	hdr.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	w.WriteHeader(http.StatusOK)
	ew := &eventWriter{w: w, rc: http.NewResponseController(w), timeout: h.writeTimeout}
	// An EventSource reconnects this long after the stream ends early.
	ew.buf = append(ew.buf, "retry: "...)
	ew.buf = strconv.AppendInt(ew.buf, h.retry*1000, 10)
	ew.buf = append(ew.buf, "\n\n"...)
	return ew
}

// relay sends the client of the stream ew each document f finds, and
// heartbeats, until the stream ends. A stream that ends early (the task
// was deleted or expired, the store failed, the service shuts down) is
// closed without an event: a client that reconnects learns why.
func (h *handler) relay(ctx context.Context, r *http.Request, ew *eventWriter, f *follower) {
	defer f.stop()
	for {
		tick, stopTick := h.heartbeatTimer()
		why, err := f.next(ctx, tick)
		stopTick()
		switch why {
		case wakeNews:
			if !h.allowed(r, f.sent.State) || h.send(r, ew, f.sent) != nil || f.sent.Status.Terminal() {
				return
			}
		case wakeTick:
			ew.buf = append(ew.buf, ": heartbeat\n\n"...)
			if ew.flush(nil) != nil {
				return
			}
		case wakeFailed:
			if !errors.Is(err, store.ErrNotFound) {
				h.report(r, err)
			}
			return
		default:
			return
		}
	}
}

// heartbeatTimer returns a channel that fires when a heartbeat is due,
// and the function that stops it; a nil channel if heartbeats are off.
func (h *handler) heartbeatTimer() (<-chan time.Time, func()) {
	if h.heartbeat <= 0 {
		return nil, func() {}
	}
	return h.clock.After(h.heartbeat)
}

// send writes doc as a "status" event whose id names it: its version,
// followed by "a" if it says the task was abandoned (see lastEvent).
func (h *handler) send(r *http.Request, ew *eventWriter, doc Document) error {
	out, err := h.render(doc)
	if err != nil {
		h.report(r, err)
		return err
	}
	ew.buf = appendEventID(append(ew.buf, "id: "...), doc)
	ew.buf = append(ew.buf, "\nevent: status\ndata: "...)
	return ew.flush(out.body)
}

// appendEventID appends the event id that names doc to b: its version,
// followed by "a" if it says the task was abandoned.
func appendEventID(b []byte, doc Document) []byte {
	b = strconv.AppendInt(b, doc.Version, 10)
	if doc.Abandoned {
		b = append(b, 'a')
	}
	return b
}

// lastEvent is the document a client that reconnects names with its
// Last-Event-ID: "12", or "12a" for the document of version 12 that says
// the task was abandoned.
type lastEvent struct {
	version   int64 // 0 if the client names none
	abandoned bool
}

// lastEventID returns the document named by r's Last-Event-ID header. An
// id this handler did not send counts as none.
func lastEventID(r *http.Request) lastEvent {
	return parseLastEvent(r.Header.Get("Last-Event-ID"))
}

// parseLastEvent returns the document named by the event id s. An id this
// package did not send counts as none.
func parseLastEvent(s string) lastEvent {
	id, abandoned := strings.CutSuffix(s, "a")
	v, err := strconv.ParseInt(id, 10, 64)
	if err != nil || v < 0 {
		return lastEvent{}
	}
	return lastEvent{v, abandoned}
}

// olderThan reports whether doc is newer than the client's document.
func (l lastEvent) olderThan(doc Document) bool {
	return doc.Version > l.version || (doc.Version == l.version && doc.Abandoned && !l.abandoned)
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
