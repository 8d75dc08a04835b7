package tracker_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// newBenchTracker returns a Tracker over a fresh memstore with the default
// options, as a service would use it, and a function that closes both. A
// benchmark function defers it, rather than leaving it to b.Cleanup, so
// that the stores of its earlier runs (one per b.N tried) are garbage by
// the time the next run measures.
func newBenchTracker(b *testing.B, opts ...tracker.Option) (*tracker.Tracker, func()) {
	b.Helper()
	mem, err := memstore.New()
	require.NoError(b, err)
	tr, err := tracker.New(mem, opts...)
	require.NoError(b, err)
	return tr, func() {
		_ = tr.Close(context.Background())
		mem.Close()
	}
}

var benchSteps = []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}

// startBench creates task id with the benchmark's steps and starts it.
func startBench(b *testing.B, tr *tracker.Tracker, id string) *tracker.Run {
	b.Helper()
	ctx := context.Background()
	require.NoError(b, tr.Apply(ctx, id, tracker.Create(benchSteps...)))
	run, err := tr.Start(ctx, id)
	require.NoError(b, err)
	return run
}

// BenchmarkTransition measures one transition of a running task: progress,
// which every long step reports.
func BenchmarkTransition(b *testing.B) {
	benchTransition(b)
}

// BenchmarkTransitionObserved is BenchmarkTransition with an observer
// that does nothing: the cost of the hook itself.
func BenchmarkTransitionObserved(b *testing.B) {
	benchTransition(b, tracker.WithObserver(func(context.Context, tracker.Event) {}))
}

func benchTransition(b *testing.B, opts ...tracker.Option) {
	tr, closeAll := newBenchTracker(b, opts...)
	defer closeAll()
	run := startBench(b, tr, "doc")
	ctx := context.Background()
	b.ReportAllocs()
	var done int64
	for b.Loop() {
		done++
		if err := run.Apply(ctx, tracker.SetProgress(store.Progress{Done: done})); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStepTransition measures one step transition of a 5-step task.
func BenchmarkStepTransition(b *testing.B) {
	tr, closeAll := newBenchTracker(b)
	defer closeAll()
	run := startBench(b, tr, "doc")
	ctx := context.Background()
	require.NoError(b, run.Apply(ctx, tracker.StartStep(benchSteps[2])))
	b.ReportAllocs()
	for b.Loop() {
		if err := run.Apply(ctx, tracker.RetryStep(benchSteps[2], nil)); err != nil {
			b.Fatal(err)
		}
	}
}

// lifecycleTransitions is the number of transitions in lifecycle.
const lifecycleTransitions = 3 + 2*5

// lifecycle records a whole 5-step task: create, start, each step started
// and succeeded, succeed.
func lifecycle(ctx context.Context, tr *tracker.Tracker, id string) error {
	if err := tr.Apply(ctx, id, tracker.Create(benchSteps...)); err != nil {
		return err
	}
	run, err := tr.Start(ctx, id)
	if err != nil {
		return err
	}
	for _, s := range benchSteps {
		if err := run.Apply(ctx, tracker.StartStep(s)); err != nil {
			return err
		}
		if err := run.Apply(ctx, tracker.SucceedStep(s)); err != nil {
			return err
		}
	}
	return run.Apply(ctx, tracker.Succeed())
}

// BenchmarkLifecycle records lifecycles of distinct tasks one after the
// other, each deleted when it ends, as expiry does for a store at its
// steady size.
func BenchmarkLifecycle(b *testing.B) {
	tr, closeAll := newBenchTracker(b)
	defer closeAll()
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		id := strconv.Itoa(n)
		if err := lifecycle(ctx, tr, id); err != nil {
			b.Fatal(err)
		}
		if err := tr.Delete(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lifecycleTransitions), "ns/transition")
}
