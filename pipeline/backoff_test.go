package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func retrying(t *testing.T, attempts int, initial, maxWait time.Duration) *step {
	t.Helper()
	s := &step{attempts: 1}
	require.NoError(t, Retry(attempts, initial, maxWait)(s))
	return s
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	s := retrying(t, 9, 100*time.Millisecond, time.Second)
	nominal := []int64{100, 200, 400, 800, 1000, 1000, 1000, 1000} // ms: doubling, capped
	for i, ms := range nominal {
		d := time.Duration(ms) * time.Millisecond
		for range 100 {
			w := s.backoff(i + 1)
			require.GreaterOrEqual(t, w, d/2, "wait before retry %d", i+1)
			require.LessOrEqual(t, w, d, "wait before retry %d", i+1)
		}
	}

	flat := retrying(t, 9, time.Second, time.Second)
	distinct := make(map[time.Duration]bool)
	for range 100 {
		distinct[flat.backoff(3)] = true
	}
	assert.Greater(t, len(distinct), 1, "waits of the same nominal length are jittered")
}

func TestBackoffZeroRetriesAtOnce(t *testing.T) {
	s := retrying(t, 3, 0, 0)
	for n := 1; n < 3; n++ {
		assert.Zero(t, s.backoff(n))
	}
	require.NoError(t, sleep(t.Context(), 0))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, sleep(ctx, 0), context.Canceled, "a canceled run does not retry, even at once")
	require.ErrorIs(t, sleep(ctx, time.Hour), context.Canceled, "a wait ends when the run is canceled")
}
