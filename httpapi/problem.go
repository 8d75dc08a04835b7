package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Problem is an RFC 9457 problem details document, the body of every
// error answer of the status handler (media type application/problem+json).
// Its Type is "about:blank": the HTTP status code says what went wrong,
// Title is the code's standard text and Detail explains it to people.
// Instance is the path of the request.
type Problem struct {
	Type     string `json:"type"`               // the kind of problem, a URI
	Title    string `json:"title"`              // a summary of the kind
	Status   int    `json:"status"`             // the HTTP status code
	Detail   string `json:"detail,omitempty"`   // what happened, for people
	Instance string `json:"instance,omitempty"` // this occurrence, a URI reference
}

// Details of the handler's error answers. They never carry the text of an
// internal error.
const (
	detailNotFound    = "No task has this id."
	detailInvalidID   = "The task id is invalid: it is empty, too long, not printable UTF-8, \".\" or \"..\", or has '{' or '}'."
	detailUnavailable = "The status store is unavailable. Retry later."
	detailBusy        = "Too many requests are waiting for changes. Retry later."
	detailInternal    = "The status could not be read."
)

// writeProblem answers r with the status code and a problem document.
func writeProblem(w http.ResponseWriter, r *http.Request, code int, detail string) {
	body, _ := json.Marshal(Problem{ // cannot fail: strings and an int
		Type:     "about:blank",
		Title:    http.StatusText(code),
		Status:   code,
		Detail:   detail,
		Instance: r.URL.EscapedPath(),
	})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/problem+json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	noStore(hdr)
	w.WriteHeader(code)
	_, _ = w.Write(body) // an error means the client has gone
}
