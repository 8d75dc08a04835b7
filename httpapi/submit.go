package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// StatusPath builds the URL paths of task statuses from the pattern the
// status handler is mounted on. Create one with [ParseStatusPath].
type StatusPath struct {
	prefix   string // the path before the wildcard
	suffix   string // the path after the wildcard
	wildcard string // the wildcard's name
}

// ParseStatusPath parses the [http.ServeMux] pattern a status handler is
// mounted on, such as "GET /process/document/{document_id}/status": an
// optional method and host, then a path in which exactly one whole segment
// is a wildcard. The paths built are the pattern's path, literal segments
// as written; when a service is reached under a prefix its mux does not
// see (through [http.StripPrefix], say), include the prefix in pattern.
func ParseStatusPath(pattern string) (StatusPath, error) {
	path := pattern
	if method, rest, ok := strings.Cut(path, " "); ok && !strings.Contains(method, "/") {
		path = strings.TrimLeft(rest, " \t")
	}
	i := strings.IndexByte(path, '/')
	if i < 0 {
		return StatusPath{}, fmt.Errorf("httpapi: status path %q: no path", pattern)
	}
	path = path[i:] // without the host
	var p StatusPath
	for seg := range strings.SplitSeq(path[1:], "/") {
		switch {
		case !strings.ContainsAny(seg, "{}"):
			if p.wildcard == "" {
				p.prefix += "/" + seg
			} else {
				p.suffix += "/" + seg
			}
		case p.wildcard == "" && len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' &&
			!strings.ContainsAny(seg[1:len(seg)-1], "{}.$"):
			p.wildcard = seg[1 : len(seg)-1]
			p.prefix += "/"
		default:
			return StatusPath{}, fmt.Errorf("httpapi: status path %q: segment %q: want one wildcard {name} as a whole segment", pattern, seg)
		}
	}
	if p.wildcard == "" {
		return StatusPath{}, fmt.Errorf("httpapi: status path %q: no wildcard", pattern)
	}
	return p, nil
}

// Wildcard returns the name of the pattern's wildcard, for [WithPathValue].
func (p StatusPath) Wildcard() string { return p.wildcard }

// URL returns the path of the status of task id: the pattern's path with
// id, escaped as one path segment, in place of the wildcard. For
// "/process/document/{document_id}/status" and "doc-123" it is
// "/process/document/doc-123/status".
func (p StatusPath) URL(id string) string {
	return p.prefix + url.PathEscape(id) + p.suffix
}

// WriteSubmitted answers a request that queued a task in the origin
// service's form: 200 OK with a JSON object holding the fields of body and
// then "status_url", the status's URL. body must encode as a JSON object
// (a struct or a map) without a status_url field of its own, or be nil. If
// it does not, WriteSubmitted writes nothing and returns an error; it
// also returns the error of the write.
func WriteSubmitted(w http.ResponseWriter, statusURL string, body any) error {
	return writeSubmission(w, http.StatusOK, statusURL, body)
}

// WriteAccepted answers a request that queued a task in the form of a
// long-running operation: 202 Accepted with the status's URL in Location,
// Retry-After (retryAfter in whole seconds, at least one) and the body
// [WriteSubmitted] writes.
func WriteAccepted(w http.ResponseWriter, statusURL string, retryAfter time.Duration, body any) error {
	w.Header().Set("Location", statusURL)
	w.Header().Set("Retry-After", strconv.FormatInt(seconds(retryAfter), 10))
	return writeSubmission(w, http.StatusAccepted, statusURL, body)
}

func writeSubmission(w http.ResponseWriter, code int, statusURL string, body any) error {
	b, err := submission(statusURL, body)
	if err != nil {
		return err
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(b)))
	noStore(hdr)
	w.WriteHeader(code)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("httpapi: write submission: %w", err)
	}
	return nil
}

// submission returns the JSON object of body's fields followed by status_url.
func submission(statusURL string, body any) ([]byte, error) {
	var fields map[string]json.RawMessage
	b, err := json.Marshal(body)
	if err == nil {
		err = json.Unmarshal(b, &fields)
	}
	if err != nil {
		return nil, fmt.Errorf("httpapi: submission body %T: %w", body, err)
	}
	if _, ok := fields["status_url"]; ok {
		return nil, errors.New("httpapi: submission body has a status_url field of its own")
	}
	if fields == nil { // body is nil
		b = []byte("{}")
	}
	b = b[:len(b)-1] // without its '}'
	if len(fields) > 0 {
		b = append(b, ',')
	}
	b = append(b, `"status_url":`...)
	u, _ := marshal(statusURL) // a string cannot fail
	b = append(b, u...)
	return append(b, '}'), nil
}
