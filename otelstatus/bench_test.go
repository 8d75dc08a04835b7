package otelstatus_test

// BenchmarkRedisTransition measures what the adapter costs where users
// feel it: task transitions through a Tracker over a real Redis, with no
// observer and with the adapter on the OpenTelemetry SDK (its observer,
// its store wrapper, a meter provider with a reader aggregating every
// series, a tracer provider recording every span), in the same run. It
// needs a Redis server:
//
//	go test -c -o /tmp/otelstatus.test ./otelstatus/
//	for i in 1 2 3 4 5; do
//		TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 /tmp/otelstatus.test \
//			-test.run '^$' -test.bench RedisTransition -test.benchtime 2s
//	done
//
// Each run measures the two designs one after the other, so five runs
// interleave them; BENCHMARKS.md gives the medians.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/taskstatus/taskstatus/otelstatus"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// benchSteps are the steps of the tasks the benchmark records.
var benchSteps = []string{"file_node_creation", "memgraph_storage", "embedding_generation", "qdrant_indexing", "freshness_analysis"}

// lifecycleTransitions is the number of transitions in lifecycle.
const lifecycleTransitions = 2 + 5 + 1

// lifecycle records a whole 5-step task of kind document: create, start
// with the first step, each step's end with the next one's start, with
// the last the task's success.
func lifecycle(ctx context.Context, tr *tracker.Tracker, id string) error {
	if err := tr.Apply(ctx, id, tracker.Create(benchSteps...), tracker.Kind("document")); err != nil {
		return err
	}
	run, err := tr.Start(ctx, id, tracker.StartStep(benchSteps[0]))
	if err != nil {
		return err
	}
	for i, s := range benchSteps[1:] {
		changes := []tracker.Change{tracker.SucceedStep(benchSteps[i]), tracker.StartStep(s)}
		if err := run.Apply(ctx, changes...); err != nil {
			return err
		}
	}
	if err := run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 5, Total: 5})); err != nil {
		return err
	}
	return run.Apply(ctx, tracker.SucceedStep(benchSteps[4]), tracker.Succeed())
}

// benchRedis returns a store on the Redis server that
// TASKSTATUS_REDIS_ADDR names, under a prefix of its own whose keys are
// deleted when b ends.
func benchRedis(b *testing.B) store.Store {
	b.Helper()
	addr := os.Getenv("TASKSTATUS_REDIS_ADDR")
	if addr == "" {
		b.Skip("TASKSTATUS_REDIS_ADDR is not set: this benchmark measures transitions over a real Redis")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, PoolSize: 64})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(b, c.Ping(ctx).Err(), "TASKSTATUS_REDIS_ADDR=%q is set but the server does not answer", addr)
	prefix := fmt.Sprintf("tsbench:%016x:", rand.Uint64())
	s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
	require.NoError(b, err)
	b.Cleanup(func() {
		require.NoError(b, s.Close())
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			require.NoError(b, c.Del(ctx, iter.Val()).Err())
		}
		require.NoError(b, iter.Err())
		require.NoError(b, c.Close())
	})
	return s
}

// withOTel returns a Tracker over s observed by the adapter on the SDK.
func withOTel(b *testing.B, s store.Store) *tracker.Tracker {
	b.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() {
		require.NoError(b, mp.Shutdown(context.Background()))
		require.NoError(b, tp.Shutdown(context.Background()))
	})
	tel, err := otelstatus.New(otelstatus.WithMeterProvider(mp), otelstatus.WithTracerProvider(tp))
	require.NoError(b, err)
	tr, err := tracker.New(tel.Store(s), tracker.WithObserver(tel.Observe))
	require.NoError(b, err)
	return tr
}

func BenchmarkRedisTransition(b *testing.B) {
	for _, tasks := range []int{1, 32} {
		for _, observer := range []string{"none", "otel"} {
			b.Run(fmt.Sprintf("tasks=%d/observer=%s", tasks, observer), func(b *testing.B) {
				s := benchRedis(b)
				var tr *tracker.Tracker
				if observer == "otel" {
					tr = withOTel(b, s)
				} else {
					var err error
					tr, err = tracker.New(s)
					require.NoError(b, err)
				}
				defer func() { require.NoError(b, tr.Close(context.Background())) }()
				benchLifecycles(b, tr, tasks)
			})
		}
	}
}

// benchLifecycles records b.N lifecycles through tr, from tasks
// goroutines at once, each deleted when it ends (as expiry does for a
// store at its steady size), and reports the time per transition.
func benchLifecycles(b *testing.B, tr *tracker.Tracker, tasks int) {
	var n atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range tasks {
		wg.Go(func() {
			ctx := context.Background()
			for i := n.Add(1); i <= int64(b.N); i = n.Add(1) {
				id := "doc-" + strconv.FormatInt(i, 10)
				if err := lifecycle(ctx, tr, id); err != nil {
					b.Error(err)
					return
				}
				if err := tr.Delete(ctx, id); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lifecycleTransitions), "ns/transition")
}
