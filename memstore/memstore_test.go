package memstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newStore returns a store on a manual clock, closed when t ends.
func newStore(t testing.TB) (*memstore.Store, *storetest.Clock) {
	t.Helper()
	clock := storetest.NewClock(time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC))
	s, err := memstore.New(memstore.WithClock(clock.Now))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, clock
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Fixture {
		s, clock := newStore(t)
		return storetest.Fixture{Store: s, Advance: func(_ *testing.T, d time.Duration) { clock.Advance(d) }}
	})
}

// TestDefaultClockExpires checks expiry on the default, monotonic clock: a
// task whose TTL has passed is gone, one within its TTL is not.
func TestDefaultClockExpires(t *testing.T) {
	s, err := memstore.New()
	require.NoError(t, err)
	defer s.Close()
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, store.Write{State: store.State{ID: "short", Status: store.StatusRunning, Version: 1}, TTL: time.Microsecond}))
	require.NoError(t, s.Put(ctx, store.Write{State: store.State{ID: "long", Status: store.StatusRunning, Version: 1}, TTL: time.Hour}))
	for start := time.Now(); time.Since(start) <= time.Microsecond; {
		// Let the short TTL pass; the clock is real, so wait on it.
	}
	_, err = s.Get(ctx, "short")
	require.ErrorIs(t, err, store.ErrNotFound, "a task past its TTL")
	_, err = s.Get(ctx, "long")
	require.NoError(t, err, "a task within its TTL")
}
