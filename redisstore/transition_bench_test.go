package redisstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// ceilingBatch is how many writes the ceiling of BenchmarkTransitions
// sends in one pipeline.
const ceilingBatch = 16

// BenchmarkTransitions measures task transitions (progress of a running
// five-step task) made through a Tracker over the store, against two
// baselines in the same run: "hset", a raw HSET of the same bytes (one
// round trip each, no compare-and-set, no index, no notice), and
// "ceiling", the store's own put script sent 16 writes to a pipeline by
// a goroutine per 16 tasks, the most that batching writes can give.
//
// With 32 and 128 tasks at once, a goroutine each, each way runs on its
// own and reports its time per transition. A task alone is a question of
// latency, and the tracker and the raw HSET take turns, one transition
// of each an iteration, the first of them alternating; the sub-benchmark
// reports the mean of each and the tracker's throughput over HSET's. Run
// on their own, back to back, the HSET loop kept the client and Redis
// awake between its short calls while the tracker's longer script let
// them sleep: the ratio was 0.57-0.74 in five runs, against 0.76-0.78 in
// turns in the same five (2026-12-04). Against the Redis server named by
// TASKSTATUS_REDIS_ADDR:
//
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench Transitions -benchtime 20000x ./redisstore/
func BenchmarkTransitions(b *testing.B) {
	b.Run("tasks=1/tracker-and-hset", func(b *testing.B) {
		c, prefix := benchClient(b)
		s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
		require.NoError(b, err)
		tr, err := tracker.New(s)
		require.NoError(b, err)
		took := latencies(b, [2]func(context.Context) error{
			trackerWriter(b, tr, "bench-tracker"), hsetWriter(c, prefix, "bench-hset"),
		})
		tracked, raw := mean(took[0]), mean(took[1])
		b.ReportMetric(float64(tracked.Nanoseconds()), "tracker-ns/op")
		b.ReportMetric(float64(raw.Nanoseconds()), "hset-ns/op")
		b.ReportMetric(float64(raw)/float64(tracked), "tracker/hset")
	})
	for _, tasks := range []int{32, 128} {
		b.Run(fmt.Sprintf("tasks=%d/tracker", tasks), func(b *testing.B) {
			c, prefix := benchClient(b)
			s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
			require.NoError(b, err)
			tr, err := tracker.New(s)
			require.NoError(b, err)
			writers := make([]writer, tasks)
			for i := range writers {
				writers[i] = trackerWriter(b, tr, fmt.Sprintf("bench-%d", i))
			}
			runWriters(b, writers)
		})
		b.Run(fmt.Sprintf("tasks=%d/hset", tasks), func(b *testing.B) {
			c, prefix := benchClient(b)
			writers := make([]writer, tasks)
			for i := range writers {
				writers[i] = hsetWriter(c, prefix, fmt.Sprintf("bench-%d", i))
			}
			runWriters(b, writers)
		})
		b.Run(fmt.Sprintf("tasks=%d/ceiling", tasks), func(b *testing.B) {
			c, prefix := benchClient(b)
			s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
			require.NoError(b, err)
			runCeiling(b, s, tasks)
		})
	}
}

// trackerWriter creates task id and starts it, and makes each write a
// progress transition of its Run.
func trackerWriter(b *testing.B, tr *tracker.Tracker, id string) writer {
	ctx := b.Context()
	require.NoError(b, tr.Apply(ctx, id, tracker.Create("file_node_creation", "memgraph_storage",
		"embedding_generation", "qdrant_indexing", "freshness_analysis")))
	run, err := tr.Start(ctx, id, tracker.StartStep("file_node_creation"))
	require.NoError(b, err)
	require.NoError(b, run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42})))
	var done int64
	return func(ctx context.Context) error {
		done++
		return run.Apply(ctx, tracker.SetProgress(store.Progress{Done: done, Total: 1 << 40}))
	}
}

// hsetWriter writes each transition's state with one HSET.
func hsetWriter(c *redis.Client, prefix, id string) writer {
	return rawWriter(prefix, id, func(ctx context.Context, key string, version int64, data []byte) error {
		return c.HSet(ctx, key, "version", version, "state", data).Err()
	})
}

// runCeiling makes about b.N writes of tasks tasks, ceilingBatch at a time
// in one pipeline, by a goroutine for each ceilingBatch tasks.
func runCeiling(b *testing.B, s *redisstore.Store, tasks int) {
	ctx := b.Context()
	states := make([][]store.State, tasks/ceilingBatch)
	for g := range states {
		for i := range ceilingBatch {
			st := benchState(fmt.Sprintf("bench-%d-%d", g, i))
			require.NoError(b, put(ctx, s, st, benchTTL))
			states[g] = append(states[g], st)
		}
	}
	var done atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for _, sts := range states {
		wg.Go(func() {
			ws := make([]store.Write, len(sts))
			for done.Add(int64(len(sts))) <= int64(b.N)+int64(len(sts))-1 {
				for i := range sts {
					sts[i] = advance(sts[i])
					ws[i] = write(sts[i])
					ws[i].TTL = benchTTL
				}
				if err := redisstore.PutPipelined(ctx, s, ws); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
}

// BenchmarkLiveTasks measures progress transitions of live tasks through
// their Runs, by 32 goroutines, each going round its share of the tasks:
// with 1,000 live tasks and with 50,000, every transition should stay one
// round trip, since each Run keeps its task's state. Against the Redis
// server named by TASKSTATUS_REDIS_ADDR:
//
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench LiveTasks -benchtime 50000x ./redisstore/
func BenchmarkLiveTasks(b *testing.B) {
	const goroutines = 32
	for _, live := range []int{1_000, 50_000} {
		b.Run(fmt.Sprintf("live=%d", live), func(b *testing.B) {
			c, prefix := benchClient(b)
			s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
			require.NoError(b, err)
			tr, err := tracker.New(s)
			require.NoError(b, err)
			shares := make([][]writer, goroutines)
			var wg sync.WaitGroup
			for g := range shares {
				wg.Go(func() {
					for i := g; i < live; i += goroutines {
						shares[g] = append(shares[g], trackerWriter(b, tr, fmt.Sprintf("bench-%d", i)))
					}
				})
			}
			wg.Wait()
			writers := make([]writer, goroutines)
			for g, share := range shares {
				n := 0
				writers[g] = func(ctx context.Context) error {
					n++
					return share[n%len(share)](ctx)
				}
			}
			log := &commandLog{}
			c.AddHook(log)
			runWriters(b, writers)
			cmds, _ := log.take()
			b.ReportMetric(float64(len(cmds))/float64(b.N), "cmds/op")
		})
	}
}
