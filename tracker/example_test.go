package tracker_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// A service records a task as it is queued, runs it step by step, and
// ends it; a status endpoint reads it back.
func Example() {
	mem, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	defer mem.Close()
	tr, err := tracker.New(mem)
	if err != nil {
		log.Print(err)
		return
	}

	ctx := tracker.ContextWithCorrelationID(context.Background(), "abc-456-def")
	_ = tr.Create(ctx, "doc-123", "parse", "index") // queued: pending, not "unknown"
	_ = tr.Start(ctx, "doc-123")
	_ = tr.StartStep(ctx, "doc-123", "parse")
	_ = tr.SucceedStep(ctx, "doc-123", "parse")
	_ = tr.SetResult(ctx, "doc-123", map[string]any{"entities_extracted": 42})
	_ = tr.StartStep(ctx, "doc-123", "index")
	_ = tr.SucceedStep(ctx, "doc-123", "index")
	_ = tr.Succeed(ctx, "doc-123")

	st, err := tr.Get(ctx, "doc-123")
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Println(st.Status, st.CorrelationID, st.Version, string(st.Result["entities_extracted"]))
	for _, s := range st.Steps {
		fmt.Println(s.Name, s.Status)
	}

	err = tr.Fail(ctx, "doc-123", errors.New("too late"), nil)
	fmt.Println(errors.Is(err, store.ErrTerminal))
	// Output:
	// success abc-456-def 8 42
	// parse success
	// index success
	// true
}

// A task whose work fails records the error, its type and the details the
// service attaches; the steps that did not run are skipped.
func ExampleTracker_Fail() {
	mem, _ := memstore.New()
	defer mem.Close()
	tr, _ := tracker.New(mem, tracker.WithErrorHandler(func(context.Context, error) {}))
	ctx := context.Background()

	_ = tr.Create(ctx, "doc-123", "embedding_generation", "qdrant_indexing")
	_ = tr.Start(ctx, "doc-123")
	_ = tr.StartStep(ctx, "doc-123", "embedding_generation")
	cause := fmt.Errorf("Vectorization failed: %w", errors.New("Connection refused"))
	_ = tr.Fail(ctx, "doc-123", cause, map[string]any{"project_id": "my-project"})

	st, _ := tr.Get(ctx, "doc-123")
	fmt.Println(st.Status, "-", st.ErrorMessage)
	fmt.Println(string(st.ErrorDetails["exception_type"]), string(st.ErrorDetails["project_id"]))
	for _, s := range st.Steps {
		fmt.Println(s.Name, s.Status)
	}
	// Output:
	// failed - Vectorization failed: Connection refused
	// "error" "my-project"
	// embedding_generation failed
	// qdrant_indexing skipped
}
