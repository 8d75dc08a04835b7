package memstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newStore returns a store on a manual clock, closed when t ends.
func newStore(t testing.TB, opts ...memstore.Option) (*memstore.Store, *storetest.Clock) {
	t.Helper()
	clock := storetest.NewClock(time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC))
	s, err := memstore.New(append([]memstore.Option{memstore.WithClock(clock.Now)}, opts...)...)
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
