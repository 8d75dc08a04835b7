package tracker

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/memstore"
)

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

func TestCacheIsBounded(t *testing.T) {
	mem, err := memstore.New()
	require.NoError(t, err)
	defer mem.Close()
	tr, err := New(mem)
	require.NoError(t, err)
	ctx := context.Background()

	for i := range 2 * maxCached {
		require.NoError(t, tr.Create(ctx, strconv.Itoa(i)))
	}
	assert.LessOrEqual(t, tr.cache.len(), maxCached+cacheShards, "tasks that wait are cached only up to the limit")
	for i := range 2 * maxCached {
		require.NoError(t, tr.Cancel(ctx, strconv.Itoa(i), nil), "a task that is no longer cached is read first")
	}
	assert.Zero(t, tr.cache.len(), "ended tasks are not cached")
}
