package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/taskstatus/taskstatus/httpapi"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// A task followed over a WebSocket by the Go client, from its current
// state to its end.
func ExampleWebSocketHandler() {
	mem, tr, _, closeAll := exampleTracker()
	defer closeAll()
	ctx := context.Background()
	if err := tr.Apply(ctx, "doc-123", tracker.Create("file_node_creation")); err != nil {
		fmt.Println(err)
		return
	}
	run, err := tr.Start(ctx, "doc-123")
	if err != nil {
		fmt.Println(err)
		return
	}

	ws, err := httpapi.WebSocketHandler(mem, httpapi.WithPathValue("document_id"), httpapi.WithIDField("document_id"))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /process/document/{document_id}/ws", ws)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := httpapi.Client{BaseURL: srv.URL, IDField: "document_id"}
	for doc, err := range client.Follow(ctx, "/process/document/doc-123/ws") {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(doc.ID, doc.Status, doc.Progress.Done)
		switch {
		case doc.Progress.Done == 0:
			err = run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1, Total: 1}))
		case !doc.Status.Terminal():
			err = run.Apply(ctx, tracker.Succeed())
		}
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output:
	// doc-123 running 0
	// doc-123 running 1
	// doc-123 success 1
}
