package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/tracker"
)

// printTask prints the recorded status of a task and of its steps.
func printTask(ctx context.Context, tr *tracker.Tracker, id string) {
	st, err := tr.Get(ctx, id)
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Printf("%s: %s", st.ID, st.Status)
	if st.ErrorMessage != "" {
		fmt.Printf(" (%s, failed_step=%s)", st.ErrorMessage, st.ErrorDetails[pipeline.FailedStepKey])
	}
	fmt.Println()
	for _, s := range st.Steps {
		fmt.Printf("  %s: %s\n", s.Name, s.Status)
	}
}

func newTracker() (*tracker.Tracker, func()) {
	mem, err := memstore.New()
	if err != nil {
		log.Fatal(err)
	}
	tr, err := tracker.New(mem)
	if err != nil {
		log.Fatal(err)
	}
	return tr, func() {
		// Write what waits for the store, then close it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Close(ctx); err != nil {
			log.Print(err)
		}
		mem.Close()
	}
}

func ExamplePipeline_Run() {
	tr, closeStore := newTracker()
	defer closeStore()
	ctx := context.Background()

	p, err := pipeline.New(
		pipeline.Step("extract", func(ctx context.Context, task *pipeline.Task) error {
			task.SetResult(map[string]any{"entities_extracted": 42})
			return nil
		}),
		pipeline.Step("embed", func(ctx context.Context, task *pipeline.Task) error {
			task.Progress(1, 1, "embedded")
			return nil
		}),
		pipeline.Step("index", func(ctx context.Context, task *pipeline.Task) error {
			task.SetResult(map[string]any{"vector_indexed": true})
			return nil
		}),
	)
	if err != nil {
		log.Print(err)
		return
	}

	// The service records the task, with its plan, when it accepts it.
	if err := tr.Apply(ctx, "doc-1", tracker.Create(p.Steps()...)); err != nil {
		log.Print(err)
		return
	}
	err = p.Run(ctx, tr, "doc-1")
	fmt.Println("run error:", err)
	printTask(ctx, tr, "doc-1")
	// Output:
	// run error: <nil>
	// doc-1: success
	//   extract: success
	//   embed: success
	//   index: success
}

func ExamplePipeline_Run_failure() {
	tr, closeStore := newTracker()
	defer closeStore()
	ctx := context.Background()

	p, err := pipeline.New(
		pipeline.Step("extract", func(ctx context.Context, task *pipeline.Task) error { return nil }),
		pipeline.Step("embed", func(ctx context.Context, task *pipeline.Task) error {
			task.Detail("project_id", "my-project")
			return errors.New("connection refused")
		}),
		pipeline.Step("index", func(ctx context.Context, task *pipeline.Task) error { return nil }),
	)
	if err != nil {
		log.Print(err)
		return
	}

	// The service records the task, with its plan, when it accepts it.
	if err := tr.Apply(ctx, "doc-2", tracker.Create(p.Steps()...)); err != nil {
		log.Print(err)
		return
	}
	err = p.Run(ctx, tr, "doc-2")
	fmt.Println("run error:", err)
	printTask(ctx, tr, "doc-2")
	// Output:
	// run error: pipeline: step "embed": connection refused
	// doc-2: failed (connection refused, failed_step="embed")
	//   extract: success
	//   embed: failed
	//   index: skipped
}

// The origin service's pipeline: indexing needs the embeddings, freshness
// analysis may fail without failing the document.
func ExampleDependsOn() {
	tr, closeStore := newTracker()
	defer closeStore()
	ctx := context.Background()
	step := func(err error) pipeline.Func {
		return func(context.Context, *pipeline.Task) error { return err }
	}

	p, err := pipeline.New(
		pipeline.Step("file_node_creation", step(nil)),
		pipeline.Step("memgraph_storage", step(nil)),
		pipeline.Step("embedding_generation", step(errors.New("Vectorization failed: Connection refused"))),
		pipeline.Step("qdrant_indexing", step(nil), pipeline.DependsOn("embedding_generation")),
		pipeline.Step("freshness_analysis", step(nil), pipeline.Optional()),
	)
	if err != nil {
		log.Print(err)
		return
	}

	if err := tr.Apply(ctx, "doc-123", tracker.Create(p.Steps()...)); err != nil {
		log.Print(err)
		return
	}
	_ = p.Run(ctx, tr, "doc-123")
	printTask(ctx, tr, "doc-123")
	// Output:
	// doc-123: failed (Vectorization failed: Connection refused, failed_step="embedding_generation")
	//   file_node_creation: success
	//   memgraph_storage: success
	//   embedding_generation: failed
	//   qdrant_indexing: failed
	//   freshness_analysis: skipped
}

func ExampleRunner() {
	tr, closeStore := newTracker()
	defer closeStore()
	runner := pipeline.NewRunner()

	p, err := pipeline.New(
		pipeline.Step("extract", func(ctx context.Context, task *pipeline.Task) error { return nil }),
		pipeline.Step("index", func(ctx context.Context, task *pipeline.Task) error { return nil }),
	)
	if err != nil {
		log.Print(err)
		return
	}

	// In a request handler: record the task, start the work and answer
	// at once.
	req := tracker.ContextWithCorrelationID(context.Background(), "abc-456-def")
	if err := tr.Apply(req, "doc-7", tracker.Create(p.Steps()...)); err != nil {
		log.Print(err)
		return
	}
	if err := runner.Go(req, p, tr, "doc-7"); err != nil {
		log.Print(err)
		return
	}

	// When the service stops: let the runs in flight finish, or cancel
	// them (recorded as canceled) if they take longer than 10 seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runner.Shutdown(ctx); err != nil {
		log.Print(err)
		return
	}
	printTask(context.Background(), tr, "doc-7")
	// Output:
	// doc-7: success
	//   extract: success
	//   index: success
}
