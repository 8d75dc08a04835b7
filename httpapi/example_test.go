package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// sameIncarnation returns body with the incarnations of the tasks it names
// replaced by the same value, so that the examples print the same output
// every time: a task's incarnation is random.
func sameIncarnation(mem *memstore.Store, body []byte) []byte {
	for _, id := range []string{"doc-123", "t1"} {
		if st, err := mem.Get(context.Background(), id); err == nil {
			body = bytes.ReplaceAll(body, []byte(`"`+st.Incarnation+`"`), []byte(`"q3k9x1v0p2"`))
		}
	}
	return body
}

// exampleTracker returns a new memstore and a tracker over it whose clock
// reads the origin document's times, and a function that closes both.
func exampleTracker() (*memstore.Store, *tracker.Tracker, *time.Time, func()) {
	mem, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	now := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	tr, err := tracker.New(mem, tracker.WithClock(func() time.Time { return now }))
	if err != nil {
		log.Fatal(err)
	}
	return mem, tr, &now, func() {
		_ = tr.Close(context.Background())
		_ = mem.Close()
	}
}

// The origin service's status endpoint, mounted on a ServeMux.
func ExampleStatusHandler() {
	mem, tr, now, closeAll := exampleTracker()
	defer closeAll()

	ctx := tracker.ContextWithCorrelationID(context.Background(), "abc-456-def")
	if err := tr.Apply(ctx, "doc-123", tracker.Create("file_node_creation", "embedding_generation")); err != nil {
		fmt.Println(err)
		return
	}
	run, err := tr.Start(ctx, "doc-123", tracker.StartStep("file_node_creation"))
	if err != nil {
		fmt.Println(err)
		return
	}
	err = errors.Join(
		run.Apply(ctx, tracker.SucceedStep("file_node_creation")),
		run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42, "vector_indexed": true})))
	*now = now.Add(5234 * time.Millisecond)
	if err = errors.Join(err, run.Apply(ctx, tracker.Succeed())); err != nil {
		fmt.Println(err)
		return
	}

	status, err := httpapi.StatusHandler(mem,
		httpapi.WithPathValue("document_id"), httpapi.WithIDField("document_id"))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /process/document/{document_id}/status", status)

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/process/document/doc-123/status", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("ETag"))
	var doc bytes.Buffer
	if err := json.Indent(&doc, sameIncarnation(mem, rec.Body.Bytes()), "", "  "); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(doc.String())

	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/process/document/doc-404/status", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	fmt.Println(rec.Body.String())
	// Output:
	// 200 application/json "v5"
	// {
	//   "document_id": "doc-123",
	//   "correlation_id": "abc-456-def",
	//   "status": "success",
	//   "started_at": "2025-11-12T10:00:00Z",
	//   "completed_at": "2025-11-12T10:00:05.234Z",
	//   "error_message": null,
	//   "error_details": null,
	//   "entities_extracted": 42,
	//   "vector_indexed": true,
	//   "pipeline_steps": {
	//     "file_node_creation": "success",
	//     "embedding_generation": "skipped"
	//   },
	//   "steps": [
	//     {
	//       "name": "file_node_creation",
	//       "status": "success",
	//       "started_at": "2025-11-12T10:00:00Z",
	//       "completed_at": "2025-11-12T10:00:00Z",
	//       "error": null,
	//       "attempt": 1,
	//       "progress": null,
	//       "sub_steps": []
	//     },
	//     {
	//       "name": "embedding_generation",
	//       "status": "skipped",
	//       "started_at": null,
	//       "completed_at": "2025-11-12T10:00:05.234Z",
	//       "error": null,
	//       "attempt": 0,
	//       "progress": null,
	//       "sub_steps": []
	//     }
	//   ],
	//   "progress": null,
	//   "attempt": 1,
	//   "version": 5,
	//   "created_at": "2025-11-12T10:00:00Z",
	//   "updated_at": "2025-11-12T10:00:05.234Z",
	//   "lease_until": null,
	//   "abandoned": false,
	//   "incarnation": "q3k9x1v0p2",
	//   "kind": null,
	//   "labels": null,
	//   "cancel_requested_at": null,
	//   "cancel_reason": null,
	//   "previous_attempts": []
	// }
	// 404 application/problem+json
	// {"type":"about:blank","title":"Not Found","status":404,"detail":"No task has this id.","instance":"/process/document/doc-404/status"}
}

// An event stream of a task that has ended: the final state, then the end.
func ExampleStatusHandler_serverSentEvents() {
	mem, tr, _, closeAll := exampleTracker()
	defer closeAll()
	ctx := context.Background()
	if err := errors.Join(tr.Apply(ctx, "t1", tracker.Create()), tr.Apply(ctx, "t1", tracker.Cancel(nil))); err != nil {
		fmt.Println(err)
		return
	}

	status, err := httpapi.StatusHandler(mem)
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /tasks/{id}/status", status)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/tasks/t1/status", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := srv.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Header.Get("Content-Type"))
	fmt.Print(string(sameIncarnation(mem, body)))
	// Output:
	// text/event-stream
	// retry: 1000
	//
	// id: 2
	// event: status
	// data: {"task_id":"t1","correlation_id":null,"status":"canceled","started_at":null,"completed_at":"2025-11-12T10:00:00Z","error_message":"canceled","error_details":null,"pipeline_steps":{},"steps":[],"progress":null,"attempt":1,"version":2,"created_at":"2025-11-12T10:00:00Z","updated_at":"2025-11-12T10:00:00Z","lease_until":null,"abandoned":false,"incarnation":"q3k9x1v0p2","kind":null,"labels":null,"cancel_requested_at":null,"cancel_reason":null,"previous_attempts":[]}
}

// The origin service's answer to POST /process/document.
func ExampleWriteSubmitted() {
	statusPath, err := httpapi.ParseStatusPath("GET /process/document/{document_id}/status")
	if err != nil {
		log.Fatal(err)
	}
	type response struct {
		Success           bool   `json:"success"`
		DocumentID        string `json:"document_id"`
		ProjectID         string `json:"project_id"`
		EntitiesExtracted int    `json:"entities_extracted"`
		Status            string `json:"status"`
		Message           string `json:"message"`
	}
	rec := httptest.NewRecorder()
	err = httpapi.WriteSubmitted(rec, statusPath.URL("doc-123"), response{
		Success:           true,
		DocumentID:        "doc-123",
		ProjectID:         "my-project",
		EntitiesExtracted: 42,
		Status:            "processing_queued",
		Message:           "Document queued for vectorization and indexing. Check status_url for completion.",
	})
	if err != nil {
		log.Fatal(err)
	}
	var body bytes.Buffer
	if err := json.Indent(&body, rec.Body.Bytes(), "", "  "); err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Code)
	fmt.Println(body.String())
	// Output:
	// 200
	// {
	//   "success": true,
	//   "document_id": "doc-123",
	//   "project_id": "my-project",
	//   "entities_extracted": 42,
	//   "status": "processing_queued",
	//   "message": "Document queued for vectorization and indexing. Check status_url for completion.",
	//   "status_url": "/process/document/doc-123/status"
	// }
}

// The long-running-operation form of a submission answer.
func ExampleWriteAccepted() {
	statusPath, err := httpapi.ParseStatusPath("GET /v1/operations/{id}")
	if err != nil {
		log.Fatal(err)
	}
	rec := httptest.NewRecorder()
	err = httpapi.WriteAccepted(rec, statusPath.URL("op 7"), 2*time.Second, map[string]any{"id": "op 7"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Code, rec.Header().Get("Location"), rec.Header().Get("Retry-After"))
	fmt.Println(rec.Body.String())
	// Output:
	// 202 /v1/operations/op%207 2
	// {"id":"op 7","status_url":"/v1/operations/op%207"}
}

func ExampleCorrelationHandler() {
	h := httpapi.CorrelationHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A Tracker called with r.Context() records this id.
		fmt.Println("in the request:", tracker.CorrelationID(r.Context()))
	}))
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/process/document", nil)
	req.Header.Set("X-Correlation-ID", "abc-456-def")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println("in the response:", rec.Header().Get("X-Correlation-ID"))
	// Output:
	// in the request: abc-456-def
	// in the response: abc-456-def
}

// Waiting for a task to end, as the origin's Python client does, with
// long polls instead of a poll a second.
func ExampleClient_Wait() {
	mem, tr, _, closeAll := exampleTracker()
	defer closeAll()
	ctx := context.Background()
	if err := tr.Apply(ctx, "doc-123", tracker.Create("embedding_generation")); err != nil {
		fmt.Println(err)
		return
	}

	status, err := httpapi.StatusHandler(mem,
		httpapi.WithPathValue("document_id"), httpapi.WithIDField("document_id"))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /process/document/{document_id}/status", status)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var work sync.WaitGroup
	defer work.Wait()
	work.Go(func() { // the background work; the tracker reports its own errors
		run, err := tr.Start(ctx, "doc-123", tracker.StartStep("embedding_generation"))
		if err != nil {
			return
		}
		_ = run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42}))
		_ = run.Apply(ctx, tracker.Fail(errors.New("Vectorization failed: Connection refused"), nil))
	})

	client := &httpapi.Client{BaseURL: srv.URL, IDField: "document_id"}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := client.Wait(wctx, "/process/document/doc-123/status")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(st.ID, st.Status, st.ErrorMessage)
	fmt.Println("entities extracted:", string(st.Result["entities_extracted"]))
	fmt.Println("embedding_generation:", st.Steps[0].Status)
	// Output:
	// doc-123 failed Vectorization failed: Connection refused
	// entities extracted: 42
	// embedding_generation: failed
}

// A dashboard mounted at /dashboard/ beside the status endpoint, whose
// event stream its task pages follow, limited to the caller's tenant by
// the same hooks as the endpoints.
func ExampleDashboardHandler() {
	mem, tr, _, closeAll := exampleTracker()
	defer closeAll()
	for _, t := range []struct{ id, tenant string }{{"doc-1", "acme"}, {"doc-2", "globex"}} {
		if err := tr.Apply(context.Background(), t.id, tracker.Create("embed"), tracker.Label("tenant", t.tenant)); err != nil {
			fmt.Println(err)
			return
		}
	}
	tenant := func(r *http.Request) string { return r.Header.Get("X-Tenant") } // set by the service's authentication
	opts := []httpapi.Option{
		httpapi.WithAuthorize(func(r *http.Request, st store.State) error {
			if st.Labels["tenant"] != tenant(r) {
				return errors.New("another tenant's task")
			}
			return nil
		}),
		httpapi.WithScope(func(r *http.Request, f *store.Filter) error {
			if f.Label.Key != "" && f.Label != (store.Label{Key: "tenant", Value: tenant(r)}) {
				return errors.New("another tenant's label")
			}
			f.Label = store.Label{Key: "tenant", Value: tenant(r)}
			return nil
		}),
	}
	const pattern = "GET /tasks/{id}/status"
	statusPath, err := httpapi.ParseStatusPath(pattern)
	if err != nil {
		fmt.Println(err)
		return
	}
	status, err := httpapi.StatusHandler(mem, opts...)
	if err != nil {
		fmt.Println(err)
		return
	}
	start := func(ctx context.Context, ended store.State) error {
		return nil // queue the task's work again
	}
	dash, err := httpapi.DashboardHandler(tr, mem, statusPath, start, opts...)
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle(pattern, status)
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", dash))

	for _, path := range []string{"/dashboard/", "/dashboard/tasks/doc-1", "/dashboard/tasks/doc-2"} {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, path, nil)
		req.Header.Set("X-Tenant", "acme")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(path, rec.Code, rec.Header().Get("Content-Type"),
			strings.Contains(rec.Body.String(), "doc-1"), strings.Contains(rec.Body.String(), "doc-2"))
	}
	// Output:
	// /dashboard/ 200 text/html; charset=utf-8 true false
	// /dashboard/tasks/doc-1 200 text/html; charset=utf-8 true false
	// /dashboard/tasks/doc-2 404 text/html; charset=utf-8 false false
}
