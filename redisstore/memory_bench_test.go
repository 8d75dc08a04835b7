package redisstore_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/tracker"
)

// BenchmarkMemoryPerTask reports what Redis keeps of a finished five-step
// task of the example service, with its kind, a label and its results:
// MEMORY USAGE of its hash, in the JSON form and in the compact one
// (WithCompactEnded), against the origin's design, the task's JSON in a
// string, in the same run. The indexes add their share too (see
// BenchmarkListPage). Against the Redis server named by
// TASKSTATUS_REDIS_ADDR:
//
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 go test -run '^$' -bench MemoryPerTask -benchtime 1000x ./redisstore/
func BenchmarkMemoryPerTask(b *testing.B) {
	b.Run("form=json", func(b *testing.B) { benchmarkMemoryPerTask(b) })
	b.Run("form=compact", func(b *testing.B) { benchmarkMemoryPerTask(b, redisstore.WithCompactEnded()) })
}

func benchmarkMemoryPerTask(b *testing.B, opts ...redisstore.Option) {
	c, prefix := benchClient(b)
	s, err := redisstore.New(c, append(opts, redisstore.WithPrefix(prefix))...)
	require.NoError(b, err)
	tr, err := tracker.New(s)
	require.NoError(b, err)
	ctx := b.Context()
	steps := []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}
	var hash, origin int64
	for i := range b.N {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		require.NoError(b, tr.Apply(ctx, id, tracker.Create(steps...), tracker.Kind("document"), tracker.Label("project_id", "project-42"),
			tracker.SetResult(map[string]any{"entities_extracted": 17, "vector_indexed": false})))
		run, err := tr.Start(ctx, id)
		require.NoError(b, err)
		for _, step := range steps {
			require.NoError(b, run.Apply(ctx, tracker.StartStep(step)))
			require.NoError(b, run.Apply(ctx, tracker.SucceedStep(step)))
		}
		require.NoError(b, run.Apply(ctx, tracker.SetResult(map[string]any{"vector_indexed": true}), tracker.Succeed()))
		used, err := c.MemoryUsage(ctx, redisstore.TaskKey(prefix, id), 0).Result()
		require.NoError(b, err)
		hash += used

		st, err := tr.Get(ctx, id)
		require.NoError(b, err)
		data, err := json.Marshal(st)
		require.NoError(b, err)
		key := prefix + "origin:" + id
		require.NoError(b, c.Set(ctx, key, data, benchTTL).Err())
		used, err = c.MemoryUsage(ctx, key, 0).Result()
		require.NoError(b, err)
		origin += used
	}
	b.ReportMetric(float64(hash)/float64(b.N), "bytes/task")
	b.ReportMetric(float64(origin)/float64(b.N), "origin-bytes/task")
}
