package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// Limits of a submission. The body limit is larger than the content
// limit, so that an oversized content is answered 400 naming the field,
// and only a body far too large for any valid document is answered 413.
const (
	maxBodyBytes         = 1 << 20
	maxContentBytes      = 512 << 10
	maxTitleBytes        = 1 << 10
	maxDocumentTypeBytes = 64
)

// submitRequest is the body of POST /process/document. Fields it does not
// name are ignored, as the origin service (FastAPI) ignores them.
type submitRequest struct {
	DocumentID   string         `json:"document_id"`
	ProjectID    string         `json:"project_id"`
	Title        string         `json:"title"`
	Content      string         `json:"content"`
	DocumentType string         `json:"document_type"`
	Metadata     map[string]any `json:"metadata"`
}

// submitResponse is the answer to POST /process/document; WriteSubmitted
// adds status_url.
type submitResponse struct {
	Success           bool   `json:"success"`
	DocumentID        string `json:"document_id"`
	ProjectID         string `json:"project_id"`
	EntitiesExtracted int    `json:"entities_extracted"`
	Status            string `json:"status"`
	Message           string `json:"message"`
}

// submit handles POST /process/document: it validates the document, records
// its task as pending with the pipeline's plan, starts the pipeline in the
// background and answers at once with the status's URL.
//
// A document whose task exists and has ended is processed again, as a new
// attempt of the task (its attempt field counts them); one whose task is
// still pending or running is refused with 409 Conflict.
func (s *server) submit(w http.ResponseWriter, r *http.Request) {
	doc, prob := decodeDocument(w, r)
	if prob != nil {
		writeProblem(w, r, prob)
		return
	}
	ctx := r.Context()
	j := &job{doc: doc, log: s.log, scale: s.delayScale, heartbeat: s.heartbeat()}
	p, err := j.pipeline()
	if err != nil {
		s.requestFailed(ctx, err)
		writeProblem(w, r, &problem{Status: http.StatusInternalServerError, Detail: "The document could not be queued."})
		return
	}

	first, prob := s.record(ctx, doc, p.Steps())
	if prob != nil {
		writeProblem(w, r, prob)
		return
	}
	if !first {
		doc.FailAt = "" // a simulated failure is a transient fault: the first attempt only
	}
	if err := s.runner.Go(ctx, p, s.tracker, doc.ID); err != nil {
		// Shutting down: the task will not run, so it must not stay pending.
		_ = s.tracker.Apply(context.WithoutCancel(ctx), doc.ID, tracker.Cancel(err))
		writeProblem(w, r, &problem{Status: http.StatusServiceUnavailable, Detail: "The service is shutting down. Retry later."})
		return
	}

	s.log.LogAttrs(ctx, slog.LevelInfo, "document queued",
		slog.String("document_id", doc.ID),
		slog.String("project_id", doc.Project),
		slog.String("correlation_id", tracker.CorrelationID(ctx)),
		slog.Int("entities_extracted", doc.Entities))
	err = httpapi.WriteSubmitted(w, s.statusPath.URL(doc.ID), submitResponse{
		Success:           true,
		DocumentID:        doc.ID,
		ProjectID:         doc.Project,
		EntitiesExtracted: doc.Entities,
		Status:            "processing_queued",
		Message:           "Document queued for vectorization and indexing. Check status_url for completion.",
	})
	if err != nil {
		s.log.DebugContext(ctx, "writing the answer", "err", err)
	}
}

// record records doc's task as pending with the named steps planned, of
// kind document and labeled with its project, or
// starts a new attempt of it if it has ended or was abandoned (its process
// died: its lease ended), and sets the result fields the origin serves from
// the start, in the same write. It reports whether the task is at its first
// attempt, or returns the problem to answer if it cannot record it.
func (s *server) record(ctx context.Context, doc *document, steps []string) (first bool, prob *problem) {
	result := results(doc)
	create := []tracker.Change{tracker.Create(steps...), tracker.Kind(taskKind),
		tracker.Label(projectLabel, doc.Project), result}
	err := s.tracker.Apply(ctx, doc.ID, create...)
	first = err == nil
	if errors.Is(err, store.ErrExists) {
		err = s.tracker.Apply(ctx, doc.ID, tracker.Retry(), result)
		if errors.Is(err, store.ErrNotFound) { // it expired since
			err = s.tracker.Apply(ctx, doc.ID, create...)
			first = err == nil
		}
	}
	switch {
	case err == nil:
		return first, nil
	case errors.Is(err, store.ErrInvalidTransition), errors.Is(err, store.ErrExists):
		return false, &problem{
			Status: http.StatusConflict,
			Detail: "The document is already being processed; its status is at " + s.statusPath.URL(doc.ID) + ".",
		}
	case errors.Is(err, store.ErrUnavailable):
		return false, &problem{Status: http.StatusServiceUnavailable, Detail: "The status store is unavailable. Retry later."}
	}
	return false, &problem{Status: http.StatusInternalServerError, Detail: "The document could not be queued."}
}

// results returns the change that sets the result fields the origin
// serves from the start of each attempt.
func results(doc *document) tracker.Change {
	return tracker.SetResult(map[string]any{
		"entities_extracted": doc.Entities,
		"vector_indexed":     false, // until qdrant_indexing succeeds
	})
}

// restart runs a new attempt of a document's task, started by the retry
// endpoint, from ended, the state of the attempt that ended: the status
// store keeps the document's id, project and entities, not its content,
// so the embedding of a retried document is one chunk. The attempt is
// not the first, so a simulated failure does not happen again.
func (s *server) restart(ctx context.Context, ended store.State) error {
	doc := &document{ID: ended.ID, Project: ended.Labels[projectLabel]}
	if raw, ok := ended.Result["entities_extracted"]; ok {
		if err := json.Unmarshal(raw, &doc.Entities); err != nil {
			return fmt.Errorf("entities_extracted of %q: %w", ended.ID, err)
		}
	}
	j := &job{doc: doc, log: s.log, scale: s.delayScale, heartbeat: s.heartbeat()}
	p, err := j.pipeline()
	if err != nil {
		return err
	}
	if err := s.tracker.Apply(ctx, doc.ID, results(doc)); err != nil {
		return err
	}
	return s.runner.Go(ctx, p, s.tracker, doc.ID)
}

// decodeDocument reads and validates the body of r, a submitRequest, or
// returns the problem to answer.
func decodeDocument(w http.ResponseWriter, r *http.Request) (*document, *problem) {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, &problem{Status: http.StatusUnsupportedMediaType,
			Detail: "The body must not be encoded (Content-Encoding: " + ce + " is not accepted)."}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, &problem{Status: http.StatusUnsupportedMediaType, Detail: "The body must be JSON (Content-Type: application/json)."}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var req submitRequest
	err := dec.Decode(&req)
	if err == nil {
		err = expectEnd(dec)
	}
	if err != nil {
		return nil, decodeProblem(err)
	}
	return validate(&req)
}

// errTrailing reports a body with more after its JSON object.
var errTrailing = errors.New("data after the JSON object")

// expectEnd returns nil if dec has nothing more to read, or else
// errTrailing or the error reading it.
func expectEnd(dec *json.Decoder) error {
	_, err := dec.Token()
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &tooLarge):
		return err
	}
	return errTrailing
}

// decodeProblem returns the problem to answer for err, an error decoding
// the body, without the Go details of the error.
func decodeProblem(err error) *problem {
	var (
		tooLarge  *http.MaxBytesError
		syntax    *json.SyntaxError
		typeError *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return &problem{Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("The body is larger than %d bytes.", tooLarge.Limit)}
	case errors.Is(err, io.EOF):
		return badRequest("", "The body is empty: it must be a JSON object.")
	case errors.Is(err, errTrailing):
		return badRequest("", "The body must be one JSON object, with nothing after it.")
	case errors.As(err, &syntax):
		return badRequest("", fmt.Sprintf("The body is not valid JSON (at byte %d).", syntax.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "The body is not valid JSON: it ends too soon.")
	case errors.As(err, &typeError) && typeError.Field != "":
		return badRequest(typeError.Field, fmt.Sprintf("%s must be a JSON %s, not %s.",
			typeError.Field, jsonKind(typeError.Type.Kind()), typeError.Value))
	case errors.As(err, &typeError):
		return badRequest("", fmt.Sprintf("The body must be a JSON object, not %s.", typeError.Value))
	}
	return badRequest("", "The body must be one JSON object.")
}

// jsonKind names the JSON type that decodes into a Go value of kind k.
func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return "value"
}

// validate checks a decoded request and returns its document, or the
// problem naming the first bad field.
func validate(req *submitRequest) (*document, *problem) {
	if req.DocumentID == "" {
		return nil, badRequest("document_id", "document_id is required.")
	}
	if err := store.ValidateID(req.DocumentID); err != nil {
		return nil, badRequest("document_id", "document_id is invalid: "+idRule(err)+".")
	}
	if req.ProjectID == "" {
		return nil, badRequest("project_id", "project_id is required.")
	}
	if err := store.ValidateID(req.ProjectID); err != nil {
		return nil, badRequest("project_id", "project_id is invalid: "+idRule(err)+".")
	}
	if req.Content == "" {
		return nil, badRequest("content", "content is required.")
	}
	for _, f := range []struct {
		name, value string
		limit       int
	}{
		{"content", req.Content, maxContentBytes},
		{"title", req.Title, maxTitleBytes},
		{"document_type", req.DocumentType, maxDocumentTypeBytes},
	} {
		if len(f.value) > f.limit {
			return nil, badRequest(f.name, fmt.Sprintf("%s is too long: %d bytes, the limit is %d.", f.name, len(f.value), f.limit))
		}
	}
	failAt, prob := simulatedFailure(req.Metadata)
	if prob != nil {
		return nil, prob
	}
	return &document{
		ID:       req.DocumentID,
		Project:  req.ProjectID,
		Content:  req.Content,
		Entities: countEntities(req.Content),
		FailAt:   failAt,
	}, nil
}

// simulatedFailure returns the step that metadata's "simulate_failure" asks
// to fail, or "" if it asks none.
func simulatedFailure(metadata map[string]any) (string, *problem) {
	v, ok := metadata["simulate_failure"]
	if !ok || v == nil {
		return "", nil
	}
	step, _ := v.(string)
	if _, ok := operation(step); !ok {
		return "", badRequest("metadata.simulate_failure", "metadata.simulate_failure must name a step: "+
			stepFileNode+", "+stepGraph+", "+stepEmbedding+", "+stepIndexing+" or "+stepFreshness+".")
	}
	return step, nil
}

// idRule returns the rule of store.ValidateID that err says was broken.
func idRule(err error) string {
	return strings.TrimPrefix(err.Error(), store.ErrInvalidID.Error()+": ")
}

// problem is an RFC 9457 problem document, with the request field at fault
// as the extension member "field".
type problem struct {
	Status int    // the HTTP status code
	Detail string // what went wrong, for people
	Field  string // the request field at fault, or ""
}

func badRequest(field, detail string) *problem {
	return &problem{Status: http.StatusBadRequest, Detail: detail, Field: field}
}

// writeProblem answers r with p, as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	body, _ := json.Marshal(struct { // cannot fail: strings and an int
		httpapi.Problem
		Field string `json:"field,omitempty"`
	}{
		Problem: httpapi.Problem{
			Type:     "about:blank",
			Title:    http.StatusText(p.Status),
			Status:   p.Status,
			Detail:   p.Detail,
			Instance: r.URL.EscapedPath(),
		},
		Field: p.Field,
	})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_, _ = w.Write(body) // an error means the client has gone
}
