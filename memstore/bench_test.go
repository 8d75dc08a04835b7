package memstore_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

var steps = []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}

func BenchmarkGet(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	for i := range 10_000 {
		require.NoError(b, s.Put(ctx, store.State{ID: strconv.Itoa(i), Status: store.StatusPending, Version: 1}, time.Hour))
	}
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = strconv.Itoa(i * 7)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Get(ctx, ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetEnded measures Get of a finished 5-step task, which the
// store keeps packed and unpacks for each reader. Its times are apart by
// uneven amounts, as a real clock's are.
func BenchmarkGetEnded(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	tick := func(n int) time.Time { return at.Add(time.Duration(n) * 104729 * time.Microsecond) }
	st := store.State{ID: "doc", CorrelationID: "c9a7f417-c2d2-48a3-802b-fa00e20dd207", Status: store.StatusSuccess,
		CreatedAt: at, StartedAt: tick(1), UpdatedAt: tick(12), CompletedAt: tick(12), Attempt: 1, Version: 1}
	for i, name := range steps {
		st.Steps = append(st.Steps, store.Step{Name: name, Status: store.StepSuccess, StartedAt: tick(2 + 2*i), CompletedAt: tick(3 + 2*i), Attempt: 1})
	}
	require.NoError(b, s.Put(ctx, st, time.Hour))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "doc"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut measures one compare-and-set write of a task, without the
// tracker.
func BenchmarkPut(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	st := store.State{ID: "doc", Status: store.StatusRunning}
	b.ReportAllocs()
	for b.Loop() {
		st.Version++
		if err := s.Put(ctx, st, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryPerTask records 100,000 finished 5-step tasks (with a
// correlation id and two result fields, as the origin's) and reports the
// heap they hold, per task.
func BenchmarkMemoryPerTask(b *testing.B) {
	const tasks = 100_000
	ctx := tracker.ContextWithCorrelationID(context.Background(), "c9a7f417-c2d2-48a3-802b-fa00e20dd207")
	result := map[string]any{"entities_extracted": 42, "vector_indexed": true}
	for b.Loop() {
		before := heapInUse()
		s, err := memstore.New()
		require.NoError(b, err)
		tr, err := tracker.New(s)
		require.NoError(b, err)
		for i := range tasks {
			id := "doc-" + strconv.Itoa(i)
			require.NoError(b, tr.Create(ctx, id, steps...))
			require.NoError(b, tr.Start(ctx, id))
			for _, step := range steps {
				require.NoError(b, tr.StartStep(ctx, id, step))
				require.NoError(b, tr.SucceedStep(ctx, id, step))
			}
			require.NoError(b, tr.SetResult(ctx, id, result))
			require.NoError(b, tr.Succeed(ctx, id))
		}
		b.ReportMetric(float64(heapInUse()-before)/tasks, "bytes/task")
		require.Equal(b, tasks, s.Len())
		s.Close()
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
