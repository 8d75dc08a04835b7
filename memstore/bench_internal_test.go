package memstore

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// BenchmarkSweep1M measures removing 1,000,000 expired tasks, reported per
// task; the sweep takes them a batch per lock hold. Run it with
// -benchtime=1x: each iteration fills the store first, untimed.
func BenchmarkSweep1M(b *testing.B) {
	const tasks = 1_000_000
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		s, clock := newTestStore(b)
		for i := range tasks {
			require.NoError(b, s.Put(ctx, store.State{ID: strconv.Itoa(i), Status: store.StatusPending, Version: 1}, time.Hour))
		}
		clock.Advance(2 * time.Hour)
		b.StartTimer()
		start := time.Now()
		removed := s.sweepExpired()
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/tasks, "ns/task")
		require.Equal(b, tasks, removed)
	}
}
