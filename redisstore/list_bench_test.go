package redisstore_test

// Benchmarks of the listing on a real Redis server (TASKSTATUS_REDIS_ADDR,
// which they require): a whole task lifecycle written with its index
// entries, and a page of failed tasks among many, against one raw
// ZREVRANGE of 50 in the same run. A server of its own keeps the shared
// one clean and its memory figure plain:
//
//	redis-server --port 6390 --save '' --daemonize yes
//	TASKSTATUS_REDIS_ADDR=127.0.0.1:6390 go test -run '^$' -bench 'Lifecycle|ListPage' \
//		-redisstore.list.tasks=1000000 ./redisstore/

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

var (
	listTasks   = flag.Int("redisstore.list.tasks", 100_000, "tasks BenchmarkListPage lists among (1% of them failed)")
	listCompact = flag.Bool("redisstore.list.compact", false, "BenchmarkListPage writes its tasks with WithCompactEnded")
)

// BenchmarkLifecycle writes whole task lifecycles, 32 at once: creation,
// running, 10 step updates, success; 13 writes, 3 of them changing the
// status. The metric is per write. The tasks that ended are kept in the
// JSON form, and in the compact one (WithCompactEnded).
func BenchmarkLifecycle(b *testing.B) {
	b.Run("form=json", func(b *testing.B) { benchmarkLifecycle(b) })
	b.Run("form=compact", func(b *testing.B) { benchmarkLifecycle(b, redisstore.WithCompactEnded()) })
}

func benchmarkLifecycle(b *testing.B, opts ...redisstore.Option) {
	c, prefix := benchClient(b)
	s, err := redisstore.New(c, append(opts, redisstore.WithPrefix(prefix))...)
	require.NoError(b, err)
	var tasks atomic.Int64
	writers := make([]writer, 32)
	for i := range writers {
		var st store.State
		writes := 0
		writers[i] = func(ctx context.Context) error {
			switch writes % 13 {
			case 0:
				st = benchState(fmt.Sprintf("life-%d", tasks.Add(1)))
				st.Status, st.Version = store.StatusPending, 1
			case 1:
				st = next(st, func(s *store.State) { s.Status = store.StatusRunning })
			case 12:
				st = succeed(st)
			default:
				st = advance(st)
			}
			writes++
			return put(ctx, s, st, benchTTL)
		}
	}
	runWriters(b, writers)
}

// BenchmarkListPage lists the newest page of 50 failed tasks among
// -redisstore.list.tasks tasks, 1% of them failed, with ids of 36
// characters, and reports the p50 and p99 of a page, the same of one raw
// ZREVRANGE of 50 on a status index, the ratio of their p50s, and the
// bytes the indexes take per task (the sorted sets, and the fields of the
// hash only the listing reads). With -redisstore.list.compact, the tasks
// are written with WithCompactEnded.
//
// The page and the raw call take turns, one of each an iteration, the
// first of them alternating, so that both meet the same machine. Run
// alone, back to back, the raw call measured the loop more than the
// command: its p50 was 14, 25 and 56 µs in three runs of 100,000 tasks
// on this 2-core machine, while taking turns with pages it was 68–77 µs
// (a single call finds the client and the server asleep; a tight loop of
// one small command keeps both awake), and the page's p50 was the same
// either way.
func BenchmarkListPage(b *testing.B) {
	if os.Getenv(envAddr) == "" {
		b.Fatalf("%s is not set: the listing is measured on a real server", envAddr)
	}
	c, prefix := benchClient(b)
	opts := []redisstore.Option{redisstore.WithPrefix(prefix)}
	if *listCompact {
		opts = append(opts, redisstore.WithCompactEnded())
	}
	s, err := redisstore.New(c, opts...)
	require.NoError(b, err)
	populateFailed(b, s, *listTasks)

	b.Run("page-and-zrevrange", func(b *testing.B) {
		f := store.Filter{Statuses: []store.Status{store.StatusFailed}}
		key := prefix + "{t0}i:failed"
		ops := [2]func(context.Context) error{
			func(ctx context.Context) error {
				page, err := s.List(ctx, f, 50, "")
				if err == nil && len(page.Tasks) != 50 {
					err = fmt.Errorf("a page of %d tasks", len(page.Tasks))
				}
				return err
			},
			func(ctx context.Context) error {
				return c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: key, Start: 0, Stop: 49, Rev: true}).Err()
			},
		}
		took := latencies(b, ops)
		page, raw := percentile(took[0], 50), percentile(took[1], 50)
		b.ReportMetric(float64(page.Microseconds()), "page-p50-µs")
		b.ReportMetric(float64(percentile(took[0], 99).Microseconds()), "page-p99-µs")
		b.ReportMetric(float64(raw.Microseconds()), "zrevrange-p50-µs")
		b.ReportMetric(float64(percentile(took[1], 99).Microseconds()), "zrevrange-p99-µs")
		b.ReportMetric(float64(page)/float64(raw), "page/zrevrange-p50")
	})
	b.Run("memory", func(b *testing.B) { // measured once, whatever b.N
		sets, fields := indexBytes(b, c, prefix)
		b.ReportMetric((sets+fields)/float64(*listTasks), "index-B/task")
		b.ReportMetric(sets/float64(*listTasks), "sets-B/task")
	})
}

// populateFailed writes n tasks, one in a hundred failed and the others
// succeeded, with ids of 36 characters, from 64 goroutines.
func populateFailed(b *testing.B, s *redisstore.Store, n int) {
	ctx := b.Context()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				st := newState(fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i))
				st.CreatedAt = st.CreatedAt.Add(time.Duration(i) * time.Millisecond)
				st.Status, st.Kind = store.StatusSuccess, "document"
				st.Labels = map[string]string{"project_id": fmt.Sprintf("p%d", i%100)}
				if i%100 == 0 {
					st.Status = store.StatusFailed
				}
				if err := put(ctx, s, st, benchTTL); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.False(b, b.Failed())
}

// indexBytes returns what the indexes of the tasks under prefix take: the
// sorted sets and the counters of every shard, and the fields only the listing reads in
// every task's hash, estimated from 100 tasks (the memory of a copy of the
// hash with them, less that of a copy without them).
func indexBytes(b *testing.B, c *redis.Client, prefix string) (sets, fields float64) {
	ctx := b.Context()
	var total int64
	for n := range 16 {
		for _, name := range append([]string{"expiry", "counts"}, statusNames()...) {
			used, err := c.MemoryUsage(ctx, fmt.Sprintf("%s{t%d}i:%s", prefix, n, name), 0).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				b.Fatal(err)
			}
			total += used
		}
	}
	var fieldBytes int64
	for i := 1; i <= 100; i++ {
		key := redisstore.TaskKey(prefix, fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i))
		all, err := c.HGetAll(ctx, key).Result()
		require.NoError(b, err)
		with, without := prefix+"copy-with", prefix+"copy-without"
		require.NoError(b, c.HSet(ctx, with, all).Err())
		for _, f := range []string{"index"} {
			delete(all, f)
		}
		require.NoError(b, c.HSet(ctx, without, all).Err())
		w, err := c.MemoryUsage(ctx, with, 0).Result()
		require.NoError(b, err)
		wo, err := c.MemoryUsage(ctx, without, 0).Result()
		require.NoError(b, err)
		fieldBytes += w - wo
		require.NoError(b, c.Del(ctx, with, without).Err())
	}
	return float64(total), float64(fieldBytes) / 100 * float64(*listTasks)
}

// statusNames returns the names of the statuses.
func statusNames() []string {
	var names []string
	for _, s := range store.Statuses() {
		names = append(names, string(s))
	}
	return names
}
