package pgstore_test

// Benchmarks of a task's writes on the server TASKSTATUS_POSTGRES_URL names,
// 32 tasks written at once, each by a goroutine of its own, on a pool of 32
// connections:
//
//	TASKSTATUS_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//	  go test -run '^$' -bench Write -benchtime 20000x -count 5 ./pgstore/
//
// Each run measures the floor, the store and the store with watches open
// in turn, so that -count interleaves them.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/internal/pgtest"
	"github.com/taskstatus/taskstatus/pgstore"
	"github.com/taskstatus/taskstatus/store"
)

// benchTasks is how many tasks are written at once.
const benchTasks = 32

// benchState returns a running task of five steps whose JSON is about
// 1 KB.
func benchState(id string) store.State {
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	st := store.State{ID: id, Incarnation: "inc-" + id, Status: store.StatusRunning, CreatedAt: at, StartedAt: at,
		UpdatedAt: at, Attempt: 1, Version: 1, Progress: store.Progress{Total: 5}}
	for _, name := range []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"} {
		st.Steps = append(st.Steps, store.Step{Name: name, Status: store.StepPending})
	}
	st.Result = map[string]json.RawMessage{"summary": json.RawMessage(`"` + strings.Repeat("x", 500) + `"`)}
	return st
}

// advance returns the state after st: one step changes, progress moves.
func advance(st store.State) store.State {
	st = st.Clone()
	st.Version++
	st.UpdatedAt = st.UpdatedAt.Add(time.Millisecond)
	i := int(st.Version) % len(st.Steps)
	st.Steps[i].Status = store.StepRunning
	st.Steps[i].StartedAt = st.UpdatedAt
	st.Progress.Done = st.Version
	return st
}

// BenchmarkWrite measures one transition of a task, 32 tasks at once:
//
//   - floor: a raw pgx UPDATE ... SET state = $2 WHERE id = $1 of the
//     same JSON, in a table of an id and a state;
//   - store: Store.Put, a compare-and-set with its history row;
//   - watched: the same while 32 other tasks are watched.
func BenchmarkWrite(b *testing.B) {
	url := pgtest.URL(b)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(b, err)
	cfg.MaxConns = benchTasks
	pool, err := pgxpool.NewWithConfig(b.Context(), cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)

	b.Run("floor", func(b *testing.B) {
		table := pgx.Identifier{pgtest.Schema(b, pool), "floor"}
		_, err := pool.Exec(b.Context(), "CREATE SCHEMA "+pgx.Identifier{table[0]}.Sanitize())
		require.NoError(b, err)
		_, err = pool.Exec(b.Context(), "CREATE TABLE "+table.Sanitize()+" (id text PRIMARY KEY, state text NOT NULL)")
		require.NoError(b, err)
		update := "UPDATE " + table.Sanitize() + " SET state = $2 WHERE id = $1"
		writers := make([]func(context.Context) error, benchTasks)
		for i := range writers {
			st := benchState(fmt.Sprintf("bench-%d", i))
			_, err := pool.Exec(b.Context(), "INSERT INTO "+table.Sanitize()+" (id, state) VALUES ($1, '')", st.ID)
			require.NoError(b, err)
			writers[i] = func(ctx context.Context) error {
				st = advance(st)
				data, err := json.Marshal(st)
				if err != nil {
					return err
				}
				_, err = pool.Exec(ctx, update, st.ID, string(data))
				return err
			}
		}
		runWriters(b, writers)
	})
	for _, watched := range []int{0, benchTasks} {
		name := "store"
		if watched > 0 {
			name = "watched"
		}
		b.Run(name, func(b *testing.B) {
			s := newStore(b, pool, pgstore.WithPollInterval(pgstore.DefaultPollInterval))
			for i := range watched {
				st := benchState(fmt.Sprintf("watched-%d", i))
				require.NoError(b, s.Put(b.Context(), store.Write{State: st}))
				ch, err := s.Watch(b.Context(), st.ID)
				require.NoError(b, err)
				<-ch
			}
			writers := make([]func(context.Context) error, benchTasks)
			for i := range writers {
				st := benchState(fmt.Sprintf("bench-%d", i))
				require.NoError(b, s.Put(b.Context(), store.Write{State: st, ID: "w0"}))
				var n int
				writers[i] = func(ctx context.Context) error {
					next := advance(st)
					n++
					err := s.Put(ctx, store.Write{State: next, Prev: st.Version, TTL: 24 * time.Hour, ID: fmt.Sprintf("w%d", n)})
					st = next
					return err
				}
			}
			runWriters(b, writers)
		})
	}
}

// runWriters makes b.N writes in all, shared among writers running at once.
func runWriters(b *testing.B, writers []func(context.Context) error) {
	ctx := b.Context()
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, w := range writers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := w(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
}
