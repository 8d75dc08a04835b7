package tracker_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// newBenchTracker returns a Tracker over a fresh memstore with the default
// options, as a service would use it, and a function that closes the
// store. A benchmark function defers it, rather than leaving it to
// b.Cleanup, so that the stores of its earlier runs (one per b.N tried)
// are garbage by the time the next run measures.
func newBenchTracker(b *testing.B) (*tracker.Tracker, func()) {
	b.Helper()
	mem, err := memstore.New()
	require.NoError(b, err)
	tr, err := tracker.New(mem)
	require.NoError(b, err)
	return tr, func() { mem.Close() }
}

var benchSteps = []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}

// BenchmarkTransition measures one transition of a running task: progress,
// which every long step reports.
func BenchmarkTransition(b *testing.B) {
	tr, closeStore := newBenchTracker(b)
	defer closeStore()
	ctx := context.Background()
	require.NoError(b, tr.Create(ctx, "doc", benchSteps...))
	require.NoError(b, tr.Start(ctx, "doc"))
	b.ReportAllocs()
	var done int64
	for b.Loop() {
		done++
		if err := tr.SetProgress(ctx, "doc", store.Progress{Done: done}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStepTransition measures one step transition of a 5-step task,
// which copies the step list.
func BenchmarkStepTransition(b *testing.B) {
	tr, closeStore := newBenchTracker(b)
	defer closeStore()
	ctx := context.Background()
	require.NoError(b, tr.Create(ctx, "doc", benchSteps...))
	require.NoError(b, tr.StartStep(ctx, "doc", benchSteps[2]))
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.RetryStep(ctx, "doc", benchSteps[2], nil); err != nil {
			b.Fatal(err)
		}
	}
}

// lifecycleTransitions is the number of transitions in lifecycle.
const lifecycleTransitions = 3 + 2*5

// lifecycle records a whole 5-step task: create, start, each step started
// and succeeded, succeed.
func lifecycle(ctx context.Context, tr *tracker.Tracker, id string) error {
	if err := tr.Create(ctx, id, benchSteps...); err != nil {
		return err
	}
	if err := tr.Start(ctx, id); err != nil {
		return err
	}
	for _, s := range benchSteps {
		if err := tr.StartStep(ctx, id, s); err != nil {
			return err
		}
		if err := tr.SucceedStep(ctx, id, s); err != nil {
			return err
		}
	}
	return tr.Succeed(ctx, id)
}

func BenchmarkLifecycle(b *testing.B) { benchLifecycles(b, false) }

// BenchmarkLifecycleParallel runs lifecycles of distinct tasks on every
// core; compare its ns/op with BenchmarkLifecycle's for the speed-up.
func BenchmarkLifecycleParallel(b *testing.B) { benchLifecyclesParallel(b, false) }

// BenchmarkLifecycleSteady is BenchmarkLifecycle with each task deleted
// once it ends, as expiry does for a store at its steady size: the heap
// stays small, so the collector has little to mark.
func BenchmarkLifecycleSteady(b *testing.B) { benchLifecycles(b, true) }

// BenchmarkLifecycleSteadyParallel is BenchmarkLifecycleSteady on every
// core.
func BenchmarkLifecycleSteadyParallel(b *testing.B) { benchLifecyclesParallel(b, true) }

// benchLifecycles records lifecycles of distinct tasks one after the other,
// deleting each when it ends if steady.
func benchLifecycles(b *testing.B, steady bool) {
	tr, closeStore := newBenchTracker(b)
	defer closeStore()
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		if err := lifecycleOnce(ctx, tr, strconv.Itoa(n), steady); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lifecycleTransitions), "ns/transition")
}

// benchLifecyclesParallel is benchLifecycles on every core.
func benchLifecyclesParallel(b *testing.B, steady bool) {
	tr, closeStore := newBenchTracker(b)
	defer closeStore()
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := lifecycleOnce(ctx, tr, strconv.FormatInt(n.Add(1), 10), steady); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// lifecycleOnce records the lifecycle of task id, then deletes it if steady.
func lifecycleOnce(ctx context.Context, tr *tracker.Tracker, id string, steady bool) error {
	if err := lifecycle(ctx, tr, id); err != nil || !steady {
		return err
	}
	return tr.Delete(ctx, id)
}

func BenchmarkTrackerGet(b *testing.B) {
	tr, closeStore := newBenchTracker(b)
	defer closeStore()
	ctx := context.Background()
	require.NoError(b, lifecycle(ctx, tr, "doc"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Get(ctx, "doc"); err != nil {
			b.Fatal(err)
		}
	}
}
