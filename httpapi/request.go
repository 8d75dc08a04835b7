package httpapi

import (
	"errors"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// query is what a status request asks for beyond the task id.
type query struct {
	wait        time.Duration // how long to wait for a change; 0 answers at once
	version     int64         // the version the client has, if hasVersion
	hasVersion  bool
	ifNoneMatch string // the If-None-Match header
}

// parseQuery reads the wait and version parameters and If-None-Match. If
// they are invalid it returns the detail of the problem, for the client.
func (h *handler) parseQuery(r *http.Request) (q query, problem string) {
	q.ifNoneMatch = r.Header.Get("If-None-Match")
	if r.URL.RawQuery == "" {
		return q, ""
	}
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return q, "The query string is malformed."
	}
	if s := v.Get("wait"); s != "" {
		if q.wait, err = parseWait(s); err != nil {
			return q, `The wait parameter must be a duration such as "30s" or a whole number of seconds.`
		}
		q.wait = min(q.wait, h.maxWait)
	}
	if s := v.Get("version"); s != "" {
		if q.version, err = strconv.ParseInt(s, 10, 64); err != nil || q.version < 0 {
			return q, "The version parameter must be a task version, a whole number."
		}
		q.hasVersion = true
	}
	return q, ""
}

// parseWait parses a wait as a whole number of seconds or a Go duration.
// Numbers too large for a Duration are the longest Duration, which the
// caller caps.
func parseWait(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if n > math.MaxInt64/uint64(time.Second) {
			return math.MaxInt64, nil
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, errors.New("negative wait")
	}
	return d, nil
}

// known reports whether doc is the document the client says it has: the
// version parameter names doc's version and doc does not say the task was
// abandoned, or else If-None-Match names doc's ETag. A client that names
// no version knows no document.
func (q query) known(doc Document) bool {
	switch {
	case q.hasVersion:
		return doc.Version == q.version && !doc.Abandoned
	case q.ifNoneMatch != "":
		return etagMatch(q.ifNoneMatch, etag(doc.Version, doc.Abandoned))
	}
	return false
}

// etagMatch reports whether the If-None-Match header value list matches
// tag, with the weak comparison RFC 9110 prescribes for If-None-Match.
func etagMatch(list, tag string) bool {
	for list != "" {
		var t string
		t, list, _ = strings.Cut(list, ",")
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}

// acceptsEventStream reports whether an Accept header value asks for
// text/event-stream with a quality above zero.
func acceptsEventStream(accept string) bool {
	if !strings.Contains(strings.ToLower(accept), "text/event-stream") {
		return false
	}
	for accept != "" {
		var r string
		r, accept, _ = strings.Cut(accept, ",")
		mt, params, err := mime.ParseMediaType(r)
		if err != nil || mt != "text/event-stream" {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
				continue
			}
		}
		return true
	}
	return false
}
