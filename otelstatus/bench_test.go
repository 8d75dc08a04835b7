package otelstatus_test

// BenchmarkRedisTransition measures what the adapter costs where users
// feel it: task transitions through a Tracker over a real Redis, with no
// observer, with the adapter's metrics (its observer and store wrapper on
// the SDK's meter provider) and with its metrics and spans (the SDK's
// tracer provider recording every span too), in the same run. It
// needs a Redis server:
//
//	go test -c -o /tmp/otelstatus.test ./otelstatus/
//	for i in 1 2 3 4 5 6 7; do
//		TASKSTATUS_REDIS_ADDR=127.0.0.1:6379 /tmp/otelstatus.test \
//			-test.run '^$' -test.bench RedisTransition -test.benchtime 2048x
//	done
//
// BENCHMARKS.md gives the medians of such runs.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

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

// withOTel returns a Tracker over s observed by the adapter on the SDK's
// meter provider, with a reader aggregating every series, and, if traced,
// on the SDK's tracer provider recording every span; if not, spans go to
// no tracer provider, as docservice's do unless one is set.
func withOTel(b *testing.B, s store.Store, traced bool) *tracker.Tracker {
	b.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	b.Cleanup(func() { require.NoError(b, mp.Shutdown(context.Background())) })
	var tp trace.TracerProvider = noop.NewTracerProvider()
	if traced {
		sdktp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		b.Cleanup(func() { require.NoError(b, sdktp.Shutdown(context.Background())) })
		tp = sdktp
	}
	tel, err := otelstatus.New(otelstatus.WithMeterProvider(mp), otelstatus.WithTracerProvider(tp))
	require.NoError(b, err)
	tr, err := tracker.New(tel.Store(s), tracker.WithObserver(tel.Observe))
	require.NoError(b, err)
	return tr
}

// BenchmarkRedisTransition measures three designs in one run: the bare
// tracker, the adapter's metrics (no tracer provider), and its metrics
// and spans (the SDK on). They take turns, a block of blockLifecycles
// lifecycles each, in an order that rotates, so that the load of a shared
// machine falls on all alike. An op is a lifecycle of each design. It
// reports each design's wall time and CPU time of the process per
// transition, and the ratios of the adapter's to the bare tracker's.
func BenchmarkRedisTransition(b *testing.B) {
	for _, tasks := range []int{1, 32} {
		b.Run(fmt.Sprintf("tasks=%d", tasks), func(b *testing.B) {
			s := benchRedis(b)
			bare, err := tracker.New(s)
			require.NoError(b, err)
			names := []string{"bare", "metrics", "otel"}
			designs := []*tracker.Tracker{bare, withOTel(b, s, false), withOTel(b, s, true)}
			var wall, cpu [3]time.Duration
			var n atomic.Int64
			for _, tr := range designs { // untimed: dial the connections, load the scripts
				timeBlock(b, tr, tasks, blockLifecycles, &n)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for done, turn := 0, 0; done < b.N; done, turn = done+blockLifecycles, turn+1 {
				block := min(blockLifecycles, b.N-done)
				for k := range designs {
					i := (k + turn) % len(designs) // none always goes first
					w, c := timeBlock(b, designs[i], tasks, block, &n)
					wall[i] += w
					cpu[i] += c
				}
			}
			b.StopTimer()
			for _, tr := range designs {
				require.NoError(b, tr.Close(context.Background()))
			}
			transitions := float64(b.N * lifecycleTransitions)
			for i, name := range names {
				b.ReportMetric(float64(wall[i].Nanoseconds())/transitions, name+"-ns/transition")
				b.ReportMetric(float64(cpu[i].Nanoseconds())/transitions, name+"-cpu-ns/transition")
				if i > 0 {
					b.ReportMetric(float64(wall[i])/float64(wall[0]), name+"-wall-ratio")
					b.ReportMetric(float64(cpu[i])/float64(cpu[0]), name+"-cpu-ratio")
				}
			}
		})
	}
}

// blockLifecycles is how many lifecycles a block of one design records.
const blockLifecycles = 64

// timeBlock records lifecycles lifecycles through tr, from tasks
// goroutines at once, each task deleted when it ends (as expiry does for
// a store at its steady size), with ids from n. It returns the wall time
// it took and the CPU time the process spent meanwhile.
func timeBlock(b *testing.B, tr *tracker.Tracker, tasks, lifecycles int, n *atomic.Int64) (wall, cpu time.Duration) {
	var left atomic.Int64
	left.Store(int64(lifecycles))
	var wg sync.WaitGroup
	cpu0, began := cpuTime(b), time.Now()
	for range tasks {
		wg.Go(func() {
			ctx := context.Background()
			for left.Add(-1) >= 0 {
				id := "doc-" + strconv.FormatInt(n.Add(1), 10)
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
	return time.Since(began), cpuTime(b) - cpu0
}

// cpuTime returns the CPU time, user and system, the process has spent.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
