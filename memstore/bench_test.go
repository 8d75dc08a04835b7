package memstore_test

import (
	"context"
	"encoding/json"
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

// BenchmarkGet measures Get of running tasks among 10,000, each bare (no
// steps, no result fields): the store's own cost, as earlier releases
// measured it.
func BenchmarkGet(b *testing.B) {
	benchGet(b, func(id string) store.State { return store.State{ID: id, Status: store.StatusRunning, Version: 1} })
}

// BenchmarkGetRunningTask is BenchmarkGet with what a status poll
// typically finds (runningTask): most of its cost is the copy of the state
// that a reader owns.
func BenchmarkGetRunningTask(b *testing.B) { benchGet(b, runningTask) }

func benchGet(b *testing.B, task func(id string) store.State) {
	s, _ := newStore(b)
	ctx := context.Background()
	for i := range 10_000 {
		require.NoError(b, s.Put(ctx, store.Write{State: task(strconv.Itoa(i)), TTL: time.Hour}))
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

// runningTask returns a running 5-step task at version 1, two steps done,
// with the origin's result fields: what a reader typically reads.
func runningTask(id string) store.State {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	st := store.State{ID: id, Incarnation: "q3k9x1v0p2", CorrelationID: "c9a7f417-c2d2-48a3-802b-fa00e20dd207",
		Status: store.StatusRunning, CreatedAt: at, StartedAt: at, UpdatedAt: at, Attempt: 1, Version: 1,
		Result: map[string]json.RawMessage{"entities_extracted": json.RawMessage(`42`), "vector_indexed": json.RawMessage(`false`)}}
	for i, name := range steps {
		status := store.StepPending
		switch {
		case i < 2:
			status = store.StepSuccess
		case i == 2:
			status = store.StepRunning
		}
		st.Steps = append(st.Steps, store.Step{Name: name, Status: status, StartedAt: at, Attempt: 1})
	}
	return st
}

// BenchmarkGetEnded measures Get of a finished 5-step task. Its times are
// apart by uneven amounts, as a real clock's are.
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
	require.NoError(b, s.Put(ctx, store.Write{State: st, TTL: time.Hour}))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, "doc"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPut measures one compare-and-set write of a task, without the
// tracker: progress of a running 5-step task with result fields (a write
// that leaves the steps as they are).
func BenchmarkPut(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	st := runningTask("doc")
	st.Version = 0
	// Each write's id differs from those of the writes before it, as a
	// tracker's do: a store takes a write whose id it remembers for a
	// resend, and applies nothing.
	ids := make([]string, 2*store.MinWriteIDs)
	for i := range ids {
		ids[i] = "w" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		st.Version++
		st.Progress.Done = st.Version
		w := store.Write{State: st, Prev: st.Version - 1, TTL: time.Hour, ID: ids[st.Version%int64(len(ids))]}
		if err := s.Put(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
	got, err := s.Get(ctx, "doc")
	require.NoError(b, err)
	require.Equal(b, st.Version, got.Version, "every write is applied")
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
			require.NoError(b, tr.Apply(ctx, id, tracker.Create(steps...)))
			run, err := tr.Start(ctx, id)
			require.NoError(b, err)
			for _, step := range steps {
				require.NoError(b, run.Apply(ctx, tracker.StartStep(step)))
				require.NoError(b, run.Apply(ctx, tracker.SucceedStep(step)))
			}
			require.NoError(b, run.Apply(ctx, tracker.SetResult(result), tracker.Succeed()))
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

// BenchmarkListPage reads a page of 50 failed tasks, from the newest, in a
// store of 1,000,000 tasks of which 1% failed: what a dashboard asks.
func BenchmarkListPage(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	for i := range 1_000_000 {
		st := store.State{ID: "doc-" + strconv.Itoa(i), Status: store.StatusSuccess, Kind: "document",
			CreatedAt: at.Add(time.Duration(i) * time.Millisecond), Attempt: 1, Version: 1}
		if i%100 == 0 {
			st.Status = store.StatusFailed
		}
		require.NoError(b, s.Put(ctx, store.Write{State: st, TTL: 24 * time.Hour}))
	}
	f := store.Filter{Statuses: []store.Status{store.StatusFailed}}
	b.ReportAllocs()
	for b.Loop() {
		page, err := s.List(ctx, f, 50, "")
		if err != nil || len(page.Tasks) != 50 {
			b.Fatal(len(page.Tasks), err)
		}
	}
}
