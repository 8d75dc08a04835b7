package trackertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
	"github.com/taskstatus/taskstatus/tracker/trackertest"
)

// exampleT stands in for the *testing.T of a test, which the examples
// cannot have: it prints failures and runs cleanups when done.
type exampleT struct {
	cleanups []func()
}

func (*exampleT) Helper()                        {}
func (*exampleT) Context() context.Context       { return context.Background() }
func (t *exampleT) Cleanup(f func())             { t.cleanups = append(t.cleanups, f) }
func (*exampleT) Fatalf(format string, a ...any) { fmt.Printf("FAIL: "+format+"\n", a...) }

func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// A test of a service's pipeline: it runs in the test's goroutine, and
// the assertions read like the domain. In a test, t is the *testing.T.
func Example() {
	t := &exampleT{}
	defer t.done()

	h := trackertest.New(t)
	p, err := pipeline.New(
		pipeline.Step("parse", func(context.Context, *pipeline.Task) error { return nil }),
		pipeline.Step("embed", func(context.Context, *pipeline.Task) error {
			return errors.New("embedding service down")
		}),
	)
	if err != nil {
		t.Fatalf("%v", err)
	}
	err = trackertest.Run(t, h.Tracker, p, "doc-1")
	fmt.Println("run:", err)

	trackertest.RequireStatus(t, h.Store, "doc-1", store.StatusFailed)
	trackertest.RequireSteps(t, h.Store, "doc-1",
		store.Step{Name: "parse", Status: store.StepSuccess},
		store.Step{Name: "embed", Status: store.StepFailed, Error: "embedding service down"})
	trackertest.RequireError(t, h.Store, "doc-1", "embedding service down",
		map[string]any{pipeline.FailedStepKey: "embed"})
	fmt.Println("as recorded")
	// Output:
	// run: pipeline: step "embed": embedding service down
	// as recorded
}

// A service's tests can back redisstore with miniredis, an in-process
// Redis: the same store code runs as in production, without a server.
// miniredis's clock moves only with FastForward, which lets a test expire
// tasks at once. What miniredis does not do: a Redis Cluster (no slot
// moves, no MOVED or ASK), persistence or restarts, and pub/sub with a
// real server's timing, so watches see changes at once; test those against
// a real server (see the repository's README, "Tests against real
// servers").
func Example_miniredis() {
	t := &exampleT{}
	defer t.done()

	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		t.Fatalf("%v", err)
		return
	}
	t.Cleanup(mr.Close)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	s, err := redisstore.New(client)
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	t.Cleanup(func() { s.Close() })
	tr, err := tracker.New(s, tracker.WithTTL(time.Hour))
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	t.Cleanup(func() { tr.Close(context.Background()) })

	ctx := t.Context()
	if err := tr.Apply(ctx, "doc-1", tracker.Create("parse")); err != nil {
		t.Fatalf("%v", err)
		return
	}
	run, err := tr.Start(ctx, "doc-1", tracker.StartStep("parse"))
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	if err := run.Apply(ctx, tracker.SucceedStep("parse"), tracker.Succeed()); err != nil {
		t.Fatalf("%v", err)
	}
	trackertest.RequireStatus(t, s, "doc-1", store.StatusSuccess)
	fmt.Println("recorded in miniredis")

	mr.FastForward(time.Hour + time.Second) // the task's time to live passes
	trackertest.RequireNotFound(t, s, "doc-1")
	fmt.Println("expired")
	// Output:
	// recorded in miniredis
	// expired
}

// A test of a service's HTTP side, submit and status, with httptest and
// the Go client: the test submits a document, follows the status URL the
// service answers with until the task ends, and checks what was recorded.
func Example_httptest() {
	t := &exampleT{}
	defer t.done()
	h := trackertest.New(t)

	// The service under test: it records the task, starts the work in
	// the background and answers with the status URL.
	const statusPattern = "GET /documents/{id}/status"
	statusPath, err := httpapi.ParseStatusPath(statusPattern)
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	status, err := httpapi.StatusHandler(h.Store)
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	p, err := pipeline.New(pipeline.Step("parse", func(_ context.Context, task *pipeline.Task) error {
		task.SetResult(map[string]any{"pages": 3})
		return nil
	}))
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	runner := pipeline.NewRunner()
	t.Cleanup(runner.Wait)
	mux := http.NewServeMux()
	mux.Handle(statusPattern, status)
	mux.HandleFunc("POST /documents/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := h.Tracker.Apply(r.Context(), id, tracker.Create(p.Steps()...)); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		_ = runner.Go(r.Context(), p, h.Tracker, id)
		_ = httpapi.WriteSubmitted(w, statusPath.URL(id), nil)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	// The test.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/documents/doc-1", nil)
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	var submitted struct {
		StatusURL string `json:"status_url"`
	}
	err = json.NewDecoder(resp.Body).Decode(&submitted)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	client := &httpapi.Client{HTTPClient: srv.Client(), BaseURL: srv.URL}
	doc, err := client.Wait(t.Context(), submitted.StatusURL)
	if err != nil {
		t.Fatalf("%v", err)
		return
	}
	fmt.Println(submitted.StatusURL, doc.Status, string(doc.Result["pages"]))
	trackertest.RequireResult(t, h.Store, "doc-1", map[string]any{"pages": 3})
	// Output:
	// /documents/doc-1/status success 3
}
