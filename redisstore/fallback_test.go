package redisstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

func TestOpenOrFallback(t *testing.T) {
	mem, err := memstore.New()
	require.NoError(t, err)
	t.Cleanup(func() { _ = mem.Close() })
	mr := miniredis.RunT(t)

	for _, tc := range []struct {
		name    string
		addr    string
		want    string // the type of store chosen
		wantLog string
	}{
		{"Redis answers", mr.Addr(), "*redisstore.Store", `level=INFO msg="redisstore: keeping task status in Redis"`},
		{"Redis is down", unusedAddr(t), "*memstore.Store", `level=WARN msg="redisstore: Redis does not answer; keeping task status in the fallback store" fallback=*memstore.Store error=`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, nil))
			s, err := redisstore.OpenOrFallback(t.Context(), newClient(t, tc.addr), mem,
				redisstore.WithLogger(logger), redisstore.WithTimeout(300*time.Millisecond))
			require.NoError(t, err)
			assert.Equal(t, tc.want, typeName(s))
			assert.Contains(t, buf.String(), tc.wantLog)
		})
	}

	t.Run("never switches", func(t *testing.T) {
		mr := miniredis.RunT(t)
		s, err := redisstore.OpenOrFallback(t.Context(), newClient(t, mr.Addr()), mem,
			redisstore.WithLogger(slog.New(slog.DiscardHandler)), redisstore.WithTimeout(300*time.Millisecond))
		require.NoError(t, err)
		mr.Close()
		_, err = s.Get(t.Context(), "doc-1")
		require.ErrorIs(t, err, store.ErrUnavailable, "Redis down after the choice: unavailable, not the fallback's answer")
	})

	t.Run("invalid arguments", func(t *testing.T) {
		c := newClient(t, mr.Addr())
		_, err := redisstore.OpenOrFallback(t.Context(), c, nil)
		require.Error(t, err, "nil fallback")
		_, err = redisstore.OpenOrFallback(t.Context(), nil, mem)
		require.Error(t, err, "nil client")
		_, err = redisstore.OpenOrFallback(t.Context(), c, mem, redisstore.WithTimeout(0))
		require.Error(t, err, "invalid option")
		_, err = redisstore.OpenOrFallback(t.Context(), c, mem, redisstore.WithLogger(nil))
		require.Error(t, err, "nil logger")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err = redisstore.OpenOrFallback(ctx, newClient(t, unusedAddr(t)), mem)
		require.ErrorIs(t, err, context.Canceled, "a caller that gave up gets no store")
	})
}

func typeName(v any) string {
	return fmt.Sprintf("%T", v)
}
