package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"github.com/taskstatus/taskstatus/tracker"
)

// Headers that carry a request's correlation id.
const (
	CorrelationIDHeader = "X-Correlation-ID"
	RequestIDHeader     = "X-Request-ID" // read when X-Correlation-ID is absent or invalid
)

// CorrelationHandler returns a handler that gives every request a
// correlation id and then calls h. The id is the request's
// X-Correlation-ID, or else its X-Request-ID, if
// [tracker.ValidCorrelationID] accepts it; otherwise a new random UUID
// (version 4). The handler sets it as the X-Correlation-ID of the
// response and puts it in the request's context with
// [tracker.ContextWithCorrelationID], where a Tracker finds it and records
// it with the tasks the request creates. The request's headers are left
// as they are.
func CorrelationHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(CorrelationIDHeader)
		if !tracker.ValidCorrelationID(id) {
			id = r.Header.Get(RequestIDHeader)
			if !tracker.ValidCorrelationID(id) {
				id = newUUID()
			}
		}
		w.Header().Set(CorrelationIDHeader, id)
		h.ServeHTTP(w, r.WithContext(tracker.ContextWithCorrelationID(r.Context(), id)))
	})
}

// newUUID returns a random UUID, version 4 (RFC 9562), in its text form.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])         // never fails: it crashes the program first
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
