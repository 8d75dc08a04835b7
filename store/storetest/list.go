package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// listed is a set of tasks a listing rule writes, and what it wrote.
type listed struct {
	states []store.State
}

// populate writes n tasks with ids prefix-0000..., of several statuses,
// kinds, labels, creation times (some equal, so that ids order them) and
// leases, and returns them.
func populate(t *testing.T, s store.Store, prefix string, n int) listed {
	t.Helper()
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	statuses := store.Statuses()
	var l listed
	for i := range n {
		st := newState(fmt.Sprintf("%s-%04d", prefix, i))
		st.CreatedAt = at.Add(time.Duration(i/3) * time.Second) // three tasks a second: ties
		st.UpdatedAt = st.CreatedAt
		st.Status = statuses[i%len(statuses)]
		st.Kind = []string{"document", "image"}[i%2]
		if i%4 != 3 {
			st.Labels = map[string]string{"project_id": fmt.Sprintf("p%d", i%3)}
		}
		if !st.Status.Terminal() {
			st.LeaseUntil = at.Add(time.Duration(i) * time.Second)
		}
		put(t, s, st)
		l.states = append(l.states, st)
	}
	return l
}

// want returns the ids of the tasks of l that f matches, newest first.
func (l listed) want(f store.Filter) []string {
	var match []store.State
	for _, st := range l.states {
		if f.Match(st) {
			match = append(match, st)
		}
	}
	slices.SortFunc(match, newestFirst)
	var ids []string
	for _, st := range match {
		ids = append(ids, st.ID)
	}
	return ids
}

// newestFirst orders states by creation time, then id, both descending.
func newestFirst(a, b store.State) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(b.ID, a.ID)
}

// listAll follows the pages of f, pageSize tasks each, to the end, and
// returns the ids found, in order, checking each page's size.
func listAll(t *testing.T, l store.Lister, f store.Filter, pageSize int) []string {
	t.Helper()
	var ids []string
	token := ""
	for range 10_000 {
		page, err := l.List(t.Context(), f, pageSize, token)
		require.NoError(t, err, "List(%+v, %d, %q)", f, pageSize, token)
		require.LessOrEqual(t, len(page.Tasks), pageSize, "a page holds at most the page size")
		for _, st := range page.Tasks {
			require.True(t, f.Match(st), "List returned task %s, which the filter %+v does not match", st.ID, f)
			ids = append(ids, st.ID)
		}
		if page.NextPageToken == "" {
			return ids
		}
		require.NotEmpty(t, page.Tasks, "a page before the last is not empty")
		token = page.NextPageToken
	}
	require.FailNow(t, "List never reached its last page")
	return nil
}

func testListFilters(t *testing.T, l store.Lister, f Fixture, id string) {
	tasks := populate(t, f.Store, id, 60)
	at := tasks.states[0].CreatedAt
	for _, filter := range []store.Filter{
		{},
		{Statuses: []store.Status{store.StatusFailed}},
		{Statuses: []store.Status{store.StatusFailed, store.StatusCanceled, store.StatusPending}},
		{Kind: "image"},
		{Label: store.Label{Key: "project_id", Value: "p1"}},
		{Label: store.Label{Key: "project_id", Value: "nobody"}},
		{Kind: "document", Label: store.Label{Key: "project_id", Value: "p2"}, Statuses: []store.Status{store.StatusSuccess, store.StatusRunning}},
		{CreatedAfter: at.Add(5 * time.Second)},
		{CreatedBefore: at.Add(5 * time.Second)},
		{CreatedAfter: at.Add(3 * time.Second), CreatedBefore: at.Add(9 * time.Second), Kind: "document"},
		{LeaseEndedBefore: at.Add(20 * time.Second)},
		{LeaseEndedBefore: at.Add(20 * time.Second), Statuses: []store.Status{store.StatusRunning}},
	} {
		require.Equal(t, tasks.want(filter), listAll(t, l, filter, store.MaxPageSize),
			"List must return the tasks the filter %+v matches, newest first (by creation time, then id)", filter)
	}
	page, err := l.List(t.Context(), store.Filter{}, 0, "")
	require.NoError(t, err)
	assert.Len(t, page.Tasks, store.DefaultPageSize, "page size 0 is the default")
	requireState(t, tasks.states[len(tasks.states)-1], page.Tasks[0], "List returns whole states")
}

func testListPages(t *testing.T, l store.Lister, f Fixture, id string) {
	tasks := populate(t, f.Store, id, 100)
	for _, size := range []int{1, 3, 7, 50, 99, 100, 101} {
		for _, filter := range []store.Filter{{}, {Statuses: []store.Status{store.StatusRunning, store.StatusFailed}}} {
			require.Equal(t, tasks.want(filter), listAll(t, l, filter, size),
				"pages of %d must return each task once, in order (filter %+v)", size, filter)
		}
	}
	require.NoError(t, f.Store.Delete(t.Context(), tasks.states[10].ID))
	tasks.states = slices.Delete(tasks.states, 10, 11)
	require.Equal(t, tasks.want(store.Filter{}), listAll(t, l, store.Filter{}, 10), "a deleted task is not listed")
}

// testListPagesWhileWritten pages through tasks while other tasks are
// created and others change status: a task that did not change meanwhile
// is returned once, and no task twice.
func testListPagesWhileWritten(t *testing.T, l store.Lister, f Fixture, id string) {
	tasks := populate(t, f.Store, id, 120)
	stable := make(map[string]bool, len(tasks.states))
	var changed []store.State
	for i, st := range tasks.states {
		if i%5 == 1 { // running tasks: these change while the pages are read
			changed = append(changed, st)
		} else {
			stable[st.ID] = true
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			st := changed[i%len(changed)]
			st = next(st, func(s *store.State) { s.Status, s.LeaseUntil = store.StatusSuccess, time.Time{} })
			changed[i%len(changed)] = st
			if err := f.Store.Put(context.Background(), write(st)); err != nil {
				assert.NoError(t, err)
				return
			}
			fresh := newState(fmt.Sprintf("%s-new-%04d", id, i))
			fresh.CreatedAt = time.Now().UTC() // newer than every other
			if err := f.Store.Put(context.Background(), write(fresh)); err != nil {
				assert.NoError(t, err)
				return
			}
			if i == len(changed)-1 {
				return
			}
		}
	})
	got := listAll(t, l, store.Filter{}, 7)
	stop()
	wg.Wait()
	seen := make(map[string]bool, len(got))
	for _, id := range got {
		require.False(t, seen[id], "task %s was returned twice across pages", id)
		seen[id] = true
	}
	for id := range stable {
		require.True(t, seen[id], "task %s did not change while the pages were read, and was skipped", id)
	}
}

func testListExpiry(t *testing.T, l store.Lister, f Fixture, id string) {
	ctx := t.Context()
	short, long := newState(id+"-short"), newState(id+"-long")
	long.CreatedAt = short.CreatedAt.Add(time.Second)
	for _, st := range []*store.State{&short, &long} {
		st.Kind, st.Labels = "document", map[string]string{"project_id": "p1"}
	}
	require.NoError(t, f.Store.Put(ctx, expiring(short)))
	w := write(long)
	w.TTL = 3 * ttlOfTest
	require.NoError(t, f.Store.Put(ctx, w))
	f.Advance(t, ttlOfTest+time.Minute)
	require.Equal(t, []string{long.ID}, listAll(t, l, store.Filter{}, 10), "an expired task is not listed")
	for _, f := range []store.Filter{
		{}, {Kind: "document"}, {Label: store.Label{Key: "project_id", Value: "p1"}},
		{Kind: "document", Label: store.Label{Key: "project_id", Value: "p1"}},
	} {
		counts, err := l.Count(ctx, f)
		require.NoError(t, err)
		assert.Equal(t, map[store.Status]int64{store.StatusPending: 1}, counts, "an expired task is not counted (%+v)", f)
	}
	require.NoError(t, f.Store.Delete(ctx, long.ID))
	counts, err := l.Count(ctx, store.Filter{Kind: "document", Label: store.Label{Key: "project_id", Value: "p1"}})
	require.NoError(t, err)
	assert.Empty(t, counts, "a deleted task is not counted")
}

// testListExpiryMoved: writes move a task's expiry later, and a shorter
// time to live moves it earlier; the task is listed and counted until it
// expires, and not after, whatever the store filed at first.
func testListExpiryMoved(t *testing.T, l store.Lister, f Fixture, id string) {
	ctx := t.Context()
	st := newState(id)
	require.NoError(t, f.Store.Put(ctx, expiring(st))) // expires at 1h
	f.Advance(t, 50*time.Minute)
	st = next(st, func(s *store.State) { s.Status = store.StatusRunning })
	require.NoError(t, f.Store.Put(ctx, expiring(st))) // expires at 1h50
	f.Advance(t, 30*time.Minute)
	require.Equal(t, []string{st.ID}, listAll(t, l, store.Filter{}, 10), "a task whose expiry a write moved later is listed until then")
	counts, err := l.Count(ctx, store.Filter{})
	require.NoError(t, err)
	assert.Equal(t, map[store.Status]int64{store.StatusRunning: 1}, counts, "and counted")

	st = next(st, func(s *store.State) { s.Status = store.StatusSuccess })
	w := write(st)
	w.TTL = time.Minute
	require.NoError(t, f.Store.Put(ctx, w)) // expires at 1h21
	f.Advance(t, 2*time.Minute)
	require.Empty(t, listAll(t, l, store.Filter{}, 10), "a task whose expiry a write moved earlier is not listed after it")
	counts, err = l.Count(ctx, store.Filter{})
	require.NoError(t, err)
	assert.Empty(t, counts, "nor counted")
}

// testListExpiryShortened: a write that keeps the task's status gives it
// a shorter time to live than it had left; the task is listed and counted
// until then, and not after.
func testListExpiryShortened(t *testing.T, l store.Lister, f Fixture, id string) {
	ctx := t.Context()
	st := newState(id)
	st.Status = store.StatusRunning
	require.NoError(t, f.Store.Put(ctx, expiring(st))) // expires at 1h
	f.Advance(t, time.Minute)
	st = next(st, func(s *store.State) { s.Progress.Done = 1 })
	require.NoError(t, f.Store.Put(ctx, expiring(st))) // expires at 1h01
	st = next(st, func(s *store.State) { s.Progress.Done = 2 })
	w := write(st)
	w.TTL = time.Minute
	require.NoError(t, f.Store.Put(ctx, w)) // expires at 2m
	require.Equal(t, []string{st.ID}, listAll(t, l, store.Filter{}, 10), "a task is listed until it expires")
	f.Advance(t, 2*time.Minute)
	require.Empty(t, listAll(t, l, store.Filter{}, 10), "a task whose time to live a write shortened is not listed after it")
	counts, err := l.Count(ctx, store.Filter{})
	require.NoError(t, err)
	assert.Empty(t, counts, "nor counted")
}

func testListInvalid(t *testing.T, l store.Lister, f Fixture, id string) {
	ctx := t.Context()
	populate(t, f.Store, id, 5)
	for name, filter := range map[string]store.Filter{
		"undefined status": {Statuses: []store.Status{"done"}},
		"bad kind":         {Kind: "a kind"},
		"bad label":        {Label: store.Label{Key: "k{"}},
		"empty time range": {CreatedAfter: time.Unix(10, 0), CreatedBefore: time.Unix(10, 0)},
	} {
		_, err := l.List(ctx, filter, 10, "")
		require.ErrorIs(t, err, store.ErrInvalidInput, "List must refuse a filter with %s", name)
	}
	for _, size := range []int{-1, store.MaxPageSize + 1} {
		_, err := l.List(ctx, store.Filter{}, size, "")
		require.ErrorIs(t, err, store.ErrInvalidInput, "List must refuse page size %d", size)
	}
	page, err := l.List(ctx, store.Filter{}, 2, "")
	require.NoError(t, err)
	require.NotEmpty(t, page.NextPageToken)
	for name, token := range map[string]string{
		"garbage":           "not a token",
		"of another filter": page.NextPageToken,
		"cut":               page.NextPageToken[:len(page.NextPageToken)/2],
	} {
		filter := store.Filter{}
		if name == "of another filter" {
			filter.Kind = "document"
		}
		_, err := l.List(ctx, filter, 2, token)
		require.ErrorIs(t, err, store.ErrInvalidInput, "List must refuse a page token %s", name)
	}
	_, err = l.Count(ctx, store.Filter{Statuses: []store.Status{store.StatusFailed}})
	require.ErrorIs(t, err, store.ErrInvalidInput, "Count takes a kind and a label only")
}

func testCount(t *testing.T, l store.Lister, f Fixture, id string) {
	tasks := populate(t, f.Store, id, 50)
	for _, filter := range []store.Filter{
		{},
		{Kind: "document"},
		{Label: store.Label{Key: "project_id", Value: "p0"}},
		{Kind: "image", Label: store.Label{Key: "project_id", Value: "p2"}},
		{Kind: "nothing"},
	} {
		want := map[store.Status]int64{}
		for _, st := range tasks.states {
			if filter.Match(st) {
				want[st.Status]++
			}
		}
		got, err := l.Count(t.Context(), filter)
		require.NoError(t, err)
		require.Equal(t, want, got, "Count(%+v) must count the tasks the filter matches, by status", filter)
	}
	// A task that changes status is counted in its new status only.
	st := next(tasks.states[0], func(s *store.State) { s.Status = store.StatusCanceled })
	put(t, f.Store, st)
	got, err := l.Count(t.Context(), store.Filter{})
	require.NoError(t, err)
	assert.Equal(t, int64(10-1), got[store.StatusPending])
	assert.Equal(t, int64(10+1), got[store.StatusCanceled])
}
