package redisstore_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

// TestIndexesHoldLiveTasks: 200 tasks expire, and nothing lists or counts
// them. The writes of 200 other tasks take every expired one out of the
// indexes: the indexes hold the live tasks only, so that their memory is
// bounded by the live tasks however few listings are made.
func TestIndexesHoldLiveTasks(t *testing.T) {
	s, mr := storeWithExpired(t, 200)
	ctx := t.Context()
	for i := range 200 {
		st := newState(fmt.Sprintf("new-%d", i))
		require.NoError(t, s.Put(ctx, write(st)))
		require.NoError(t, s.Put(ctx, write(succeed(st))))
	}
	var entries int
	for _, key := range mr.Keys() {
		if !strings.Contains(key, "}i:") {
			continue
		}
		members, err := mr.ZMembers(key)
		require.NoError(t, err)
		for _, m := range members {
			require.Contains(t, m, "new-", "index %s holds an entry of a task that expired", key)
		}
		entries += len(members)
	}
	assert.Equal(t, 200, entries, "one entry per live task")
	counts, err := s.Count(ctx, store.Filter{})
	require.NoError(t, err)
	assert.Equal(t, map[store.Status]int64{store.StatusSuccess: 200}, counts)
}

// TestListSweeps: tasks expire while nothing writes; a listing that finds
// their entries takes them out of the indexes, so that a service that only
// reads does not keep the entries of expired tasks.
func TestListSweeps(t *testing.T) {
	s, mr := storeWithExpired(t, 50)
	ctx := t.Context()
	page, err := s.List(ctx, store.Filter{}, 10, "")
	require.NoError(t, err)
	assert.Empty(t, page.Tasks)
	assert.Empty(t, page.NextPageToken)
	for _, key := range mr.Keys() {
		require.NotContains(t, key, "}i:", "index %s is left after the listing", key)
	}
}

// TestListLeavesOutUnreadableTasks: a task whose hash holds a state that
// does not decode, or the state of another task, is left out of a page,
// with a warning; the others are listed.
func TestListLeavesOutUnreadableTasks(t *testing.T) {
	var logged syncBuffer
	s, mr, _ := newMiniStore(t, redisstore.WithLogger(newJSONLogger(&logged)))
	ctx := t.Context()
	for i := range 4 {
		st := newState(fmt.Sprintf("task-%d", i))
		st.CreatedAt = st.CreatedAt.Add(time.Duration(i) * time.Second)
		require.NoError(t, s.Put(ctx, write(st)))
	}
	key := func(id string) string { return redisstore.TaskKey(redisstore.DefaultPrefix, id) }
	mr.HSet(key("task-1"), "state", "{not json")
	mr.HSet(key("task-2"), "state", mr.HGet(key("task-3"), "state"))
	page, err := s.List(ctx, store.Filter{}, 10, "")
	require.NoError(t, err)
	var listed []string
	for _, st := range page.Tasks {
		listed = append(listed, st.ID)
	}
	assert.Equal(t, []string{"task-3", "task-0"}, listed, "the tasks that cannot be read are left out")
	assert.Equal(t, 2, strings.Count(logged.String(), "a task cannot be read"), "each with a warning: %s", logged.String())
}

// storeWithExpired returns a store on miniredis that holds n tasks, old-0
// and on, which have just expired.
func storeWithExpired(t *testing.T, n int) (*redisstore.Store, *miniServer) {
	t.Helper()
	s, mr, _ := newMiniStore(t)
	now := time.Now()
	mr.SetTime(now)
	for i := range n {
		w := write(newState(fmt.Sprintf("old-%d", i)))
		w.TTL = time.Minute
		require.NoError(t, s.Put(t.Context(), w))
	}
	mr.SetTime(now.Add(2 * time.Minute))
	mr.FastForward(2 * time.Minute)
	return s, mr
}
