package redisstore_test

// Benchmarks of a task's writes: the store's one script per transition
// against the floor (a pipelined HSET and PEXPIRE writing the same bytes,
// with no compare-and-set) and the origin design (GET the JSON, change it in
// Go, SETEX it back: two round trips, racy). They run against the Redis
// server named by TASKSTATUS_REDIS_ADDR, or miniredis when it is unset:
//
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench . -benchtime 1s ./redisstore/
//
// which takes about 25 seconds on two cores (-benchtime 2000x: 3 seconds).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

const benchTTL = 24 * time.Hour

// serverAddr returns the address of the server named by
// TASKSTATUS_REDIS_ADDR, which must answer, or of a new miniredis server.
func serverAddr(tb testing.TB) string {
	tb.Helper()
	addr := os.Getenv(envAddr)
	if addr == "" {
		return miniredis.RunT(tb).Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(tb, newClient(tb, addr).Ping(ctx).Err(), "%s=%q is set but the server does not answer", envAddr, addr)
	return addr
}

// benchClient returns a client of serverAddr's server and a prefix whose
// keys are deleted when tb ends.
func benchClient(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	c := newClient(tb, serverAddr(tb))
	prefix := fmt.Sprintf("tstest:%016x:", rand.Uint64())
	tb.Cleanup(func() { deleteKeys(tb, c, prefix) })
	return c, prefix
}

// benchState returns a running task of five steps, with a result.
func benchState(id string) store.State {
	st := newState(id)
	st.Status = store.StatusRunning
	st.StartedAt = st.CreatedAt
	for _, name := range []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"} {
		st.Steps = append(st.Steps, store.Step{Name: name, Status: store.StepPending})
	}
	st.Result = map[string]json.RawMessage{"entities_extracted": json.RawMessage(`42`)}
	st.Progress.Total = 5
	return st
}

// advance returns the state after st: one step changes, progress moves.
func advance(st store.State) store.State {
	return next(st, func(s *store.State) {
		i := int(s.Version) % len(s.Steps)
		s.Steps[i].Status = store.StepRunning
		s.Steps[i].StartedAt = s.UpdatedAt
		s.Progress.Done = s.Version
	})
}

// A writer makes the next write to its own task.
type writer func(ctx context.Context) error

// BenchmarkWrite measures one task transition written three ways, with 1, 8
// and 32 tasks written at once, each by a goroutine of its own. The
// trips/op metric counts round trips to the server per transition.
func BenchmarkWrite(b *testing.B) {
	for _, tasks := range []int{1, 8, 32} {
		for _, design := range []struct {
			name      string
			newWriter func(b *testing.B, c *redis.Client, prefix, id string) writer
		}{
			{"store", storeWriter},
			{"pipeline", pipelineWriter},
			{"origin", originWriter},
		} {
			b.Run(fmt.Sprintf("tasks=%d/%s", tasks, design.name), func(b *testing.B) {
				c, prefix := benchClient(b)
				writers := make([]writer, tasks)
				for i := range writers {
					writers[i] = design.newWriter(b, c, prefix, fmt.Sprintf("bench-%d", i))
				}
				log := &commandLog{}
				c.AddHook(log)
				runWriters(b, writers)
				_, trips := log.take()
				b.ReportMetric(float64(trips)/float64(b.N), "trips/op")
			})
		}
	}
}

// runWriters makes b.N writes in all, shared among writers running at once.
func runWriters(b *testing.B, writers []writer) {
	ctx := b.Context()
	var done atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, w := range writers {
		wg.Go(func() {
			for done.Add(1) <= int64(b.N) {
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

// storeWriter writes each transition with Store.Put, keeping the latest
// state as a tracker does.
func storeWriter(b *testing.B, c *redis.Client, prefix, id string) writer {
	s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
	require.NoError(b, err)
	st := benchState(id)
	require.NoError(b, put(b.Context(), s, st, benchTTL))
	return func(ctx context.Context) error {
		st = advance(st)
		return put(ctx, s, st, benchTTL)
	}
}

// pipelineWriter writes the same bytes as the store with HSET and PEXPIRE in
// one pipeline: one round trip, no compare-and-set, no notification.
func pipelineWriter(b *testing.B, c *redis.Client, prefix, id string) writer {
	return rawWriter(prefix, id, func(ctx context.Context, key string, version int64, data []byte) error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "version", version, "state", data)
			p.PExpire(ctx, key, benchTTL)
			return nil
		})
		return err
	})
}

// rawWriter makes each write of task id the next state's version and
// JSON, written to the task's key by send.
func rawWriter(prefix, id string, send func(ctx context.Context, key string, version int64, data []byte) error) writer {
	key := redisstore.TaskKey(prefix, id)
	st := benchState(id)
	return func(ctx context.Context) error {
		st = advance(st)
		data, err := json.Marshal(st)
		if err != nil {
			return err
		}
		return send(ctx, key, st.Version, data)
	}
}

// originWriter writes as the origin service did: GET the JSON, change it,
// SET it back with its expiry (SETEX).
func originWriter(b *testing.B, c *redis.Client, prefix, id string) writer {
	key := redisstore.TaskKey(prefix, id)
	data, err := json.Marshal(benchState(id))
	require.NoError(b, err)
	require.NoError(b, c.Set(b.Context(), key, data, benchTTL).Err())
	return func(ctx context.Context) error {
		return originUpdate(ctx, c, key, func(st *store.State) { *st = advance(*st) })
	}
}

// originUpdate changes the task at key by edit with GET and SETEX.
func originUpdate(ctx context.Context, c *redis.Client, key string, edit func(*store.State)) error {
	data, err := c.Get(ctx, key).Bytes()
	if err != nil {
		return err
	}
	var st store.State
	if err := json.Unmarshal(data, &st); err != nil {
		return err
	}
	edit(&st)
	if data, err = json.Marshal(st); err != nil {
		return err
	}
	return c.Set(ctx, key, data, benchTTL).Err() // SET EX, the SETEX of the origin
}

// TestLostUpdates has 16 goroutines each move a step of its own of one task
// through 20 updates, concurrently: with the origin design some updates are
// overwritten; with the store, retrying on conflict, none is.
func TestLostUpdates(t *testing.T) {
	const (
		goroutines = 16
		updates    = 20
	)
	steps := func() store.State {
		st := newState("lost-updates")
		for i := range goroutines {
			st.Steps = append(st.Steps, store.Step{Name: fmt.Sprintf("step-%02d", i), Status: store.StepRunning})
		}
		return st
	}
	// lost counts the updates missing from st.
	lost := func(st store.State) int {
		n := 0
		for _, sp := range st.Steps {
			n += updates - sp.Attempt
		}
		return n
	}
	// bump counts one update of step i.
	bump := func(i int) func(*store.State) {
		return func(st *store.State) { st.Steps[i].Attempt++ }
	}
	concurrently := func(t *testing.T, update func(ctx context.Context, i int) error) {
		var wg sync.WaitGroup
		for i := range goroutines {
			wg.Go(func() {
				for range updates {
					if err := update(t.Context(), i); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}

	t.Run("origin", func(t *testing.T) {
		c, prefix := benchClient(t)
		key := prefix + "{lost-updates}"
		data, err := json.Marshal(steps())
		require.NoError(t, err)
		require.NoError(t, c.Set(t.Context(), key, data, benchTTL).Err())
		concurrently(t, func(ctx context.Context, i int) error {
			return originUpdate(ctx, c, key, bump(i))
		})
		data, err = c.Get(t.Context(), key).Bytes()
		require.NoError(t, err)
		var st store.State
		require.NoError(t, json.Unmarshal(data, &st))
		t.Logf("origin design: %d of %d updates lost", lost(st), goroutines*updates)
	})

	t.Run("store", func(t *testing.T) {
		c, prefix := benchClient(t)
		s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
		require.NoError(t, err)
		require.NoError(t, put(t.Context(), s, steps(), benchTTL))
		var conflicts atomic.Int64
		concurrently(t, func(ctx context.Context, i int) error {
			for {
				cur, err := s.Get(ctx, "lost-updates")
				if err != nil {
					return err
				}
				err = put(ctx, s, next(cur, bump(i)), benchTTL)
				if !errors.Is(err, store.ErrConflict) {
					return err
				}
				conflicts.Add(1)
			}
		})
		st, err := s.Get(t.Context(), "lost-updates")
		require.NoError(t, err)
		t.Logf("store: %d of %d updates lost, %d conflicts retried", lost(st), goroutines*updates, conflicts.Load())
		require.Zero(t, lost(st), "the store must lose no update")
		require.Equal(t, int64(1+goroutines*updates), st.Version)
	})
}

// latencies runs each of the two ops b.N times, taking turns: in
// iteration i, ops[i%2] runs first. It returns the latencies of each op,
// sorted.
func latencies(b *testing.B, ops [2]func(context.Context) error) [2][]time.Duration {
	ctx := b.Context()
	var took [2][]time.Duration
	b.ResetTimer()
	for i := range b.N {
		for k := range len(ops) {
			n := (i + k) % len(ops)
			start := time.Now()
			if err := ops[n](ctx); err != nil {
				b.Fatal(err)
			}
			took[n] = append(took[n], time.Since(start))
		}
	}
	b.StopTimer()
	for _, t := range took {
		slices.Sort(t)
	}
	return took
}

// percentile returns the p-th percentile of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	return sorted[len(sorted)*p/100]
}

// mean returns the mean of took.
func mean(took []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	return sum / time.Duration(len(took))
}
