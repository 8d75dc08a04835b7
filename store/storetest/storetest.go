// Package storetest checks that a [store.Store] keeps the contract the
// tracker relies on. A store's own test calls [Run]:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Fixture {
//			clock := newFakeClock()
//			s := mystore.New(mystore.WithClock(clock.Now))
//			t.Cleanup(func() { s.Close() })
//			return storetest.Fixture{Store: s, Advance: clock.Advance}
//		})
//	}
//
// Each rule is a named subtest that builds its own fixture, uses ids of its
// own, runs in parallel with the others, and says in its failure message
// which rule was broken. If the store implements [store.Watcher], the watch
// rules are checked too, and if it implements [store.Lister], the listing
// rules: a fixture's store must then hold only the tasks its rule writes.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// A Fixture is one store under test and the means to drive its clock.
type Fixture struct {
	// Store is the store under test.
	Store store.Store

	// Advance makes d of the store's time pass, so that tasks whose
	// time to live ends within d expire. It is required: a store whose
	// expiry cannot be driven cannot show that it expires tasks.
	Advance func(t *testing.T, d time.Duration)
}

// watchTimeout bounds every wait on a watch channel, so that a store that
// fails to deliver makes the test fail instead of hang.
const watchTimeout = 10 * time.Second

// Run checks every rule of the Store contract against fixtures made by
// newFixture, which is called once per subtest.
func Run(t *testing.T, newFixture func(t *testing.T) Fixture) {
	run := fmt.Sprintf("st%08x", rand.Uint32())
	for _, tc := range []struct {
		name string
		test func(t *testing.T, f Fixture, id string)
	}{
		{"GetUnknown", testGetUnknown},
		{"DeleteUnknown", testDeleteUnknown},
		{"RoundTrip", testRoundTrip},
		{"VersionIncrements", testVersionIncrements},
		{"ConflictOnStaleVersion", testConflict},
		{"CreateAfterDelete", testCreateAfterDelete},
		{"Incarnation", testIncarnation},
		{"Restore", testRestore},
		{"Resend", testResend},
		{"InvalidWrite", testInvalidWrite},
		{"TTL", testTTL},
		{"ConcurrentWriters", testConcurrentWriters},
		{"InvalidID", testInvalidID},
		{"InvalidState", testInvalidState},
		{"LargeValues", testLargeValues},
		{"ReadIsolation", testReadIsolation},
		{"CopiesOut", testCopiesOut},
		{"PutKeepsNoMemory", testPutKeepsNoMemory},
		{"CanceledContext", testCanceledContext},
		{"WatchUnknown", watchTest(testWatchUnknown)},
		{"WatchInOrder", watchTest(testWatchInOrder)},
		{"WatchAfterEnd", watchTest(testWatchAfterEnd)},
		{"WatchCancel", watchTest(testWatchCancel)},
		{"WatchDelete", watchTest(testWatchDelete)},
		{"WatchQuiet", watchTest(testWatchQuiet)},
		{"WatchCopiesOut", watchTest(testWatchCopiesOut)},
		{"ListFilters", listTest(testListFilters)},
		{"ListPages", listTest(testListPages)},
		{"ListPagesWhileWritten", listTest(testListPagesWhileWritten)},
		{"ListExpiry", listTest(testListExpiry)},
		{"ListExpiryMoved", listTest(testListExpiryMoved)},
		{"ListExpiryShortened", listTest(testListExpiryShortened)},
		{"ListInvalid", listTest(testListInvalid)},
		{"Count", listTest(testCount)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			require.NotNil(t, f.Store, "Fixture.Store is nil")
			require.NotNil(t, f.Advance, "Fixture.Advance is nil: expiry cannot be checked")
			tc.test(t, f, run+"-"+tc.name)
		})
	}
}

// watchTest runs test only for stores that implement store.Watcher. For the
// others there is nothing to check, and the subtest passes empty.
func watchTest(test func(t *testing.T, w store.Watcher, f Fixture, id string)) func(*testing.T, Fixture, string) {
	return func(t *testing.T, f Fixture, id string) {
		if w, ok := f.Store.(store.Watcher); ok {
			test(t, w, f, id)
		}
	}
}

// listTest runs test only for stores that implement store.Lister.
func listTest(test func(t *testing.T, l store.Lister, f Fixture, id string)) func(*testing.T, Fixture, string) {
	return func(t *testing.T, f Fixture, id string) {
		if l, ok := f.Store.(store.Lister); ok {
			test(t, l, f, id)
		}
	}
}

// newState returns a pending task at version 1, created at a fixed instant
// with a nanosecond part, so that lost precision shows.
func newState(id string) store.State {
	created := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	return store.State{
		ID:          id,
		Incarnation: fmt.Sprintf("inc-%08x", rand.Uint32()),
		Status:      store.StatusPending,
		CreatedAt:   created,
		UpdatedAt:   created,
		Attempt:     1,
		Version:     1,
	}
}

// write returns the write of st computed from the version before it,
// with a write id of its own.
func write(st store.State) store.Write {
	return store.Write{State: st, Prev: st.Version - 1, ID: fmt.Sprintf("w-%016x", rand.Uint64())}
}

// next returns the state after st with one change applied by edit.
func next(st store.State, edit func(*store.State)) store.State {
	st = st.Clone()
	st.Version++
	st.UpdatedAt = st.UpdatedAt.Add(time.Millisecond)
	if edit != nil {
		edit(&st)
	}
	return st
}

// ttlOfTest is the time to live of the tasks of the TTL rule.
const ttlOfTest = time.Hour

// expiring returns the write of st with the TTL rule's time to live.
func expiring(st store.State) store.Write {
	w := write(st)
	w.TTL = ttlOfTest
	return w
}

func put(t *testing.T, s store.Store, st store.State) {
	t.Helper()
	require.NoError(t, s.Put(t.Context(), write(st)), "Put of version %d", st.Version)
}

// requireState fails unless got records want, comparing times to the
// millisecond and requiring them in UTC.
func requireState(t *testing.T, want, got store.State, msgAndArgs ...any) {
	t.Helper()
	for _, tm := range []time.Time{got.CreatedAt, got.StartedAt, got.UpdatedAt, got.CompletedAt, got.LeaseUntil} {
		require.Equal(t, time.UTC, tm.Location(), "times must come back in UTC")
	}
	want, got = truncate(want), truncate(got)
	if !want.Equal(got) {
		require.Equal(t, want, got, msgAndArgs...) // shows the difference
		require.Fail(t, "states differ", msgAndArgs...)
	}
}

func truncate(st store.State) store.State {
	st = st.Clone()
	times := []*time.Time{&st.CreatedAt, &st.StartedAt, &st.UpdatedAt, &st.CompletedAt, &st.LeaseUntil, &st.CancelRequestedAt}
	for i := range st.Steps {
		times = append(times, &st.Steps[i].StartedAt, &st.Steps[i].CompletedAt)
	}
	for i := range st.PreviousAttempts {
		times = append(times, &st.PreviousAttempts[i].StartedAt, &st.PreviousAttempts[i].CompletedAt)
	}
	for _, tm := range times {
		*tm = tm.Truncate(time.Millisecond).UTC()
	}
	return st
}

func testGetUnknown(t *testing.T, f Fixture, id string) {
	_, err := f.Store.Get(t.Context(), id)
	require.ErrorIs(t, err, store.ErrNotFound, "Get of a task never created must report ErrNotFound")
}

func testDeleteUnknown(t *testing.T, f Fixture, id string) {
	require.NoError(t, f.Store.Delete(t.Context(), id), "Delete of an unknown task is not an error")
}

func testRoundTrip(t *testing.T, f Fixture, id string) {
	st := newState(id)
	put(t, f.Store, st)
	got, err := f.Store.Get(t.Context(), id)
	require.NoError(t, err)
	requireState(t, st, got, "a pending task must read back as written")

	at := st.CreatedAt
	full := next(st, func(s *store.State) {
		s.CorrelationID = "c9a7f417-c2d2-48a3-802b-fa00e20dd207"
		s.Kind = "document"
		s.Labels = map[string]string{"project_id": "my-project", "tenant": "ünïcode tenant"}
		s.Status = store.StatusFailed
		s.StartedAt = at.Add(time.Second)
		s.CompletedAt = at.Add(5234 * time.Millisecond)
		s.UpdatedAt = s.CompletedAt
		s.LeaseUntil = at.Add(time.Minute)
		s.ErrorMessage = "Vectorization failed: Connection refused ✗"
		s.ErrorDetails = map[string]json.RawMessage{
			"exception_type": json.RawMessage(`"ConnectionError"`),
			"nested":         json.RawMessage(`{"a":[1,2.5,null,true],"b":"\u003chtml\u003e"}`),
		}
		s.Steps = []store.Step{
			{Name: "file_node_creation", Status: store.StepSuccess, StartedAt: at.Add(time.Second), CompletedAt: at.Add(2 * time.Second), Attempt: 1},
			{Name: "embedding_generation", Status: store.StepFailed, StartedAt: at.Add(2 * time.Second), CompletedAt: at.Add(3 * time.Second), Error: "Connection refused", Attempt: 3,
				Progress: store.Progress{Done: 7000, Total: 10000, Message: "chunks"},
				SubSteps: []store.SubStep{
					{Name: "chunk", Status: store.StepSuccess, StartedAt: at.Add(2 * time.Second), CompletedAt: at.Add(2500 * time.Millisecond)},
					{Name: "embed", Status: store.StepFailed, StartedAt: at.Add(2500 * time.Millisecond), CompletedAt: at.Add(3 * time.Second), Error: "Connection refused"},
					{Name: "upsert", Status: store.StepSkipped, CompletedAt: at.Add(3 * time.Second)},
				}},
			{Name: "freshness_analysis", Status: store.StepFailed, StartedAt: at.Add(3 * time.Second), CompletedAt: at.Add(3 * time.Second), Error: "dependency embedding_generation failed", Attempt: 1},
		}
		s.Progress = store.Progress{Done: 2, Total: 5, Message: "embedding"}
		s.Result = map[string]json.RawMessage{
			"entities_extracted": json.RawMessage(`42`),
			"vector_indexed":     json.RawMessage(`false`),
		}
		s.CancelRequestedAt = at.Add(2500 * time.Millisecond)
		s.CancelReason = "superseded by «v2»"
		s.Attempt = 2
		s.PreviousAttempts = []store.Attempt{{
			Attempt: 1, Status: store.StatusFailed, StartedAt: at.Add(100 * time.Millisecond),
			CompletedAt: at.Add(900 * time.Millisecond), ErrorMessage: "timeout ✗",
			ErrorDetails: map[string]json.RawMessage{"exception_type": json.RawMessage(`"TimeoutError"`)},
		}}
	})
	requireEveryField(t, full)
	put(t, f.Store, full)
	got, err = f.Store.Get(t.Context(), id)
	require.NoError(t, err)
	requireState(t, full, got, "every field must read back as written")
}

// requireEveryField fails if a field of st, of its steps or of its
// previous attempts, holds its
// zero value: a field added to store.State must be set in the states this
// suite writes, so that every store is checked to keep it.
func requireEveryField(t *testing.T, st store.State) {
	t.Helper()
	var zeros []string
	// collect adds the fields zero in every value of vs.
	collect := func(prefix string, vs ...reflect.Value) {
		require.NotEmpty(t, vs, "storetest writes no %s", prefix)
		for i := range vs[0].NumField() {
			if !slices.ContainsFunc(vs, func(v reflect.Value) bool { return !v.Field(i).IsZero() }) {
				zeros = append(zeros, prefix+vs[0].Type().Field(i).Name)
			}
		}
	}
	collect("State.", reflect.ValueOf(st))
	var steps, subSteps []reflect.Value
	for _, s := range st.Steps {
		steps = append(steps, reflect.ValueOf(s))
		for _, sub := range s.SubSteps {
			subSteps = append(subSteps, reflect.ValueOf(sub))
		}
	}
	collect("Step.", steps...)
	collect("SubStep.", subSteps...)
	require.NotEmpty(t, st.PreviousAttempts)
	collect("Attempt.", reflect.ValueOf(st.PreviousAttempts[0]))
	require.Empty(t, zeros, "storetest writes no value in these fields, so no store is checked to keep them: set them in testRoundTrip")
}

func testVersionIncrements(t *testing.T, f Fixture, id string) {
	st := newState(id)
	for v := int64(1); v <= 5; v++ {
		put(t, f.Store, st)
		got, err := f.Store.Get(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, v, got.Version, "Get must return the version last written")
		st = next(st, nil)
	}
}

func testConflict(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	v1 := newState(id)
	put(t, f.Store, v1)

	require.ErrorIs(t, f.Store.Put(ctx, write(v1)), store.ErrConflict,
		"creating a task that exists (version 1 again) must be a conflict")
	v3 := next(next(v1, nil), nil)
	require.ErrorIs(t, f.Store.Put(ctx, write(v3)), store.ErrConflict,
		"a write that skips a version must be a conflict")

	got, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, v1, got, "a refused write must change nothing")

	v2 := next(v1, func(s *store.State) { s.Status = store.StatusRunning })
	put(t, f.Store, v2)
	stale := next(v1, func(s *store.State) { s.Status = store.StatusCanceled })
	require.ErrorIs(t, f.Store.Put(ctx, write(stale)), store.ErrConflict,
		"a write computed from an older version must be a conflict")
	got, err = f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, v2, got, "a stale write must not overwrite the newer state")
}

func testCreateAfterDelete(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	st := newState(id)
	put(t, f.Store, st)
	put(t, f.Store, next(st, nil))
	require.NoError(t, f.Store.Delete(ctx, id))
	_, err := f.Store.Get(ctx, id)
	require.ErrorIs(t, err, store.ErrNotFound, "a deleted task must be gone")
	require.ErrorIs(t, f.Store.Put(ctx, write(next(next(st, nil), nil))), store.ErrConflict,
		"a deleted task must not be updated as if it still existed")
	put(t, f.Store, st)
}

func testTTL(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	forever := newState(id + "-forever")
	require.NoError(t, f.Store.Put(ctx, write(forever)))

	st := newState(id)
	require.NoError(t, f.Store.Put(ctx, expiring(st)))
	f.Advance(t, 40*time.Minute)
	_, err := f.Store.Get(ctx, id)
	require.NoError(t, err, "a task must live until its TTL ends")

	st = next(st, nil)
	require.NoError(t, f.Store.Put(ctx, expiring(st)), "write before expiry")
	f.Advance(t, 40*time.Minute)
	_, err = f.Store.Get(ctx, id)
	require.NoError(t, err, "every write must restart the TTL")

	f.Advance(t, 21*time.Minute)
	_, err = f.Store.Get(ctx, id)
	require.ErrorIs(t, err, store.ErrNotFound, "a task must expire when its TTL ends")
	require.ErrorIs(t, f.Store.Put(ctx, expiring(next(st, nil))), store.ErrConflict,
		"an expired task must not be updated as if it still existed")
	require.NoError(t, f.Store.Put(ctx, expiring(newState(id))), "an expired id can be created again")

	_, err = f.Store.Get(ctx, forever.ID)
	require.NoError(t, err, "a task written with ttl 0 must not expire")
}

// testIncarnation checks that a write computed from a task that was
// deleted is refused once a new task of the same id has reached the same
// version: a version number alone does not tell the two apart.
func testIncarnation(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	old := newState(id)
	put(t, f.Store, old)
	old = next(old, nil)
	put(t, f.Store, old)
	require.NoError(t, f.Store.Delete(ctx, id))

	renewed := newState(id)
	require.NotEqual(t, old.Incarnation, renewed.Incarnation)
	put(t, f.Store, renewed)
	renewed = next(renewed, func(s *store.State) { s.Status = store.StatusRunning })
	put(t, f.Store, renewed)

	stale := next(old, func(s *store.State) { s.Status = store.StatusCanceled })
	require.ErrorIs(t, f.Store.Put(ctx, write(stale)), store.ErrConflict,
		"a write computed from another incarnation must be refused, though its version follows the stored one")
	got, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, renewed, got, "a write of another incarnation must change nothing")
}

// testRestore checks that a task the store lost can be written again with
// the versions its readers knew (Prev 0), and only while it is absent.
func testRestore(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	st := newState(id)
	for range 6 {
		st = next(st, nil)
	}
	restore := store.Write{State: st, ID: "restore-" + id}
	require.NoError(t, f.Store.Put(ctx, restore), "a write with Prev 0 must create a task at any version")
	got, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, st, got, "a restored task must read back at its version")

	again := next(st, nil)
	require.ErrorIs(t, f.Store.Put(ctx, store.Write{State: again, ID: "restore-2-" + id}), store.ErrConflict,
		"a write with Prev 0 must be refused while the task exists")
	put(t, f.Store, again)
}

// testResend checks that a write applied once is recognised when it is
// resent (its reply was lost), even after other writes: it changes nothing
// and succeeds.
func testResend(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	created := write(newState(id))
	require.NoError(t, f.Store.Put(ctx, created))
	require.NoError(t, f.Store.Put(ctx, created), "a create resent at once must succeed")

	first := write(next(created.State, func(s *store.State) { s.Status = store.StatusRunning }))
	require.NoError(t, f.Store.Put(ctx, first))
	cur := first.State
	for range store.MinWriteIDs - 1 {
		cur = next(cur, func(s *store.State) { s.Progress.Done++ })
		put(t, f.Store, cur)
	}
	require.NoError(t, f.Store.Put(ctx, first),
		"a write resent after %d other writes must be recognised as applied", store.MinWriteIDs-1)
	got, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, cur, got, "a resent write must change nothing")

	other := first
	other.ID = "never-" + id
	require.ErrorIs(t, f.Store.Put(ctx, other), store.ErrConflict,
		"a stale write with an id the store never applied must be a conflict")

	require.NoError(t, f.Store.Delete(ctx, id))
	require.NoError(t, f.Store.Put(ctx, created), "after a delete, a create resent must create the task")
}

func testInvalidWrite(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	st := newState(id)
	for name, w := range map[string]store.Write{
		"version not after Prev": {State: next(st, nil), Prev: 5},
		"negative Prev":          {State: st, Prev: -1},
		"long write id":          {State: st, ID: strings.Repeat("w", store.MaxIDLen+1)},
		"long incarnation": {State: next(st, func(s *store.State) {
			s.Version, s.Incarnation = 1, strings.Repeat("i", store.MaxIDLen+1)
		})},
	} {
		require.ErrorIs(t, f.Store.Put(ctx, w), store.ErrInvalidInput, "Put must refuse a write with %s", name)
	}
	_, err := f.Store.Get(ctx, id)
	require.ErrorIs(t, err, store.ErrNotFound, "a refused write must not be stored")
}

// testConcurrentWriters has many goroutines each add one step to the same
// task by read, change, compare-and-set, retrying on conflict. A store that
// lets two writers succeed against the same version loses a step.
func testConcurrentWriters(t *testing.T, f Fixture, id string) {
	const writers = 32
	ctx := t.Context()
	put(t, f.Store, newState(id))

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			step := fmt.Sprintf("step-%02d", i)
			for {
				cur, err := f.Store.Get(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				err = f.Store.Put(ctx, write(next(cur, func(s *store.State) {
					s.Steps = append(s.Steps, store.Step{Name: step, Status: store.StepSuccess})
				})))
				if !errors.Is(err, store.ErrConflict) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, int64(1+writers), got.Version, "every successful write must add one version")
	require.Len(t, got.Steps, writers, "a successful compare-and-set must never be overwritten (lost update)")
}

func testInvalidID(t *testing.T, f Fixture, _ string) {
	ctx := t.Context()
	for _, id := range []string{"", "a{b}c", "{tag}", strings.Repeat("x", store.MaxIDLen+1), "a\x00b", "new\nline", "\xff\xfe", ".."} {
		_, err := f.Store.Get(ctx, id)
		require.ErrorIs(t, err, store.ErrInvalidID, "Get(%q)", id)
		st := newState(id)
		require.ErrorIs(t, f.Store.Put(ctx, write(st)), store.ErrInvalidID, "Put(%q)", id)
		require.ErrorIs(t, f.Store.Delete(ctx, id), store.ErrInvalidID, "Delete(%q)", id)
		if w, ok := f.Store.(store.Watcher); ok {
			_, err := w.Watch(ctx, id)
			require.ErrorIs(t, err, store.ErrInvalidID, "Watch(%q)", id)
		}
	}
	longest := strings.Repeat("é", store.MaxIDLen/2)
	put(t, f.Store, newState(longest[:len(longest)-4]+fmt.Sprintf("%04x", rand.Uint32()&0xffff)))
}

func testInvalidState(t *testing.T, f Fixture, id string) {
	for name, edit := range map[string]func(*store.State){
		"version 0":         func(s *store.State) { s.Version = 0 },
		"undefined status":  func(s *store.State) { s.Status = "processing_queued" },
		"undefined step":    func(s *store.State) { s.Steps = []store.Step{{Name: "a", Status: "canceled"}} },
		"empty step status": func(s *store.State) { s.Steps = []store.Step{{Name: "a"}} },
	} {
		st := newState(id)
		edit(&st)
		require.ErrorIs(t, f.Store.Put(t.Context(), write(st)), store.ErrInvalidInput, "Put must refuse a state with %s", name)
		_, err := f.Store.Get(t.Context(), id)
		require.ErrorIs(t, err, store.ErrNotFound, "a refused state must not be stored (%s)", name)
	}
}

func testLargeValues(t *testing.T, f Fixture, id string) {
	big := strings.Repeat("x", 256<<10)
	details := map[string]json.RawMessage{"trace": json.RawMessage(`"` + big + `"`)}
	for i := range 1000 {
		details[fmt.Sprintf("key-%04d", i)] = json.RawMessage(fmt.Sprint(i))
	}
	st := newState(id)
	put(t, f.Store, st)
	st = next(st, func(s *store.State) {
		s.Status = store.StatusFailed
		s.ErrorMessage = big
		s.ErrorDetails = details
		for i := range 256 {
			s.Steps = append(s.Steps, store.Step{Name: fmt.Sprintf("step-%03d", i), Status: store.StepSkipped})
		}
	})
	put(t, f.Store, st)
	got, err := f.Store.Get(t.Context(), id)
	require.NoError(t, err)
	requireState(t, st, got, "large details, messages and step lists must read back whole")
}

// testReadIsolation checks that a State already read does not change when
// the task is written again: readers hold snapshots.
func testReadIsolation(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	st := next(newState(id), func(s *store.State) {
		s.Version = 1
		s.Steps = []store.Step{{Name: "a", Status: store.StepRunning}}
		s.Result = map[string]json.RawMessage{"n": json.RawMessage(`1`)}
	})
	put(t, f.Store, st)
	read, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	before := read.Clone()

	put(t, f.Store, next(read, func(s *store.State) {
		s.Steps[0].Status = store.StepSuccess
		s.Result["n"] = json.RawMessage(`2`)
	}))
	requireState(t, before, read, "a later write must not change a state already read")

	// Nor may the writes of other tasks, which a store may give the
	// memory of an ended task.
	read, err = f.Store.Get(ctx, id)
	require.NoError(t, err)
	before = read.Clone()
	put(t, f.Store, next(read, func(s *store.State) { s.Status = store.StatusSuccess }))
	for i := range 100 {
		put(t, f.Store, next(newState(fmt.Sprintf("%s-other-%d", id, i)), func(s *store.State) {
			s.Version = 1
			s.Steps = []store.Step{{Name: "other", Status: store.StepFailed}}
		}))
	}
	requireState(t, before, read, "writes of other tasks must not change a state already read")
}

// scribble changes every part of st a reader could change in place.
func scribble(st *store.State) {
	st.Status = store.StatusCanceled
	st.CreatedAt = st.CreatedAt.Add(time.Hour)
	for i := range st.Steps {
		st.Steps[i].Status = store.StepSkipped
		st.Steps[i].Name += "!"
		for j := range st.Steps[i].SubSteps {
			st.Steps[i].SubSteps[j].Status = store.StepSkipped
		}
	}
	st.Steps = append(st.Steps, store.Step{Name: "added", Status: store.StepFailed})
	for _, m := range []map[string]json.RawMessage{st.ErrorDetails, st.Result} {
		for k, v := range m {
			for i := range v {
				v[i] = ' '
			}
			m[k+"!"] = json.RawMessage(`0`)
		}
	}
}

// richState returns st at version 1 with steps, details and results.
func richState(id string) store.State {
	return next(newState(id), func(s *store.State) {
		s.Version, s.Status = 1, store.StatusRunning
		s.Steps = []store.Step{
			{Name: "a", Status: store.StepRunning, SubSteps: []store.SubStep{{Name: "a1", Status: store.StepRunning}}},
			{Name: "b", Status: store.StepPending},
		}
		s.ErrorDetails = map[string]json.RawMessage{"exception_type": json.RawMessage(`"X"`)}
		s.Result = map[string]json.RawMessage{"n": json.RawMessage(`1`), "tags": json.RawMessage(`["x"]`)}
	})
}

// testCopiesOut checks that changing any part of a State the store
// returned changes nothing stored: readers own what they read.
func testCopiesOut(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	st := richState(id)
	put(t, f.Store, st)
	for range 2 { // twice: a store might share memory between reads
		read, err := f.Store.Get(ctx, id)
		require.NoError(t, err)
		scribble(&read)
		got, err := f.Store.Get(ctx, id)
		require.NoError(t, err)
		requireState(t, st, got, "changing a state read must not change the stored task")
	}
	// The same for a task that has ended, which a store may keep apart.
	ended := next(st, func(s *store.State) { s.Status = store.StatusSuccess })
	put(t, f.Store, ended)
	read, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	scribble(&read)
	got, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, ended, got, "changing a state read must not change the stored task")
}

// testPutKeepsNoMemory checks that a caller may change the steps of a State
// it has written: the store keeps none of them.
func testPutKeepsNoMemory(t *testing.T, f Fixture, id string) {
	ctx := t.Context()
	st := next(newState(id), func(s *store.State) {
		s.Version = 1
		s.Steps = []store.Step{{Name: "a", Status: store.StepRunning}, {Name: "b", Status: store.StepPending}}
	})
	put(t, f.Store, st)
	want := st.Clone()
	st.Steps[0].Status = store.StepFailed
	st.Steps = append(st.Steps[:1], store.Step{Name: "c", Status: store.StepSkipped})
	got, err := f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, want, got, "changing a state after Put must not change the stored task")

	// The same again for a write that follows another (a store may
	// reuse its memory then).
	v2 := next(want, func(s *store.State) { s.Steps[0].Status = store.StepSuccess })
	put(t, f.Store, v2)
	want2 := v2.Clone()
	v2.Steps[0].Status = store.StepSkipped
	got, err = f.Store.Get(ctx, id)
	require.NoError(t, err)
	requireState(t, want2, got, "changing a state after Put must not change the stored task")

	// And the maps and their values.
	rich := richState(id + "-rich")
	want3 := rich.Clone()
	put(t, f.Store, rich)
	scribble(&rich)
	got, err = f.Store.Get(ctx, rich.ID)
	require.NoError(t, err)
	requireState(t, want3, got, "changing a state after Put must not change the stored task")
}

func testCanceledContext(t *testing.T, f Fixture, id string) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := f.Store.Get(ctx, id)
	require.ErrorIs(t, err, context.Canceled, "Get with a canceled context")
	require.ErrorIs(t, f.Store.Put(ctx, write(newState(id))), context.Canceled, "Put with a canceled context")
	_, err = f.Store.Get(t.Context(), id)
	require.ErrorIs(t, err, store.ErrNotFound, "a Put with a canceled context must not write")
}

func testWatchUnknown(t *testing.T, w store.Watcher, _ Fixture, id string) {
	_, err := w.Watch(t.Context(), id)
	require.ErrorIs(t, err, store.ErrNotFound, "Watch of a task never created")
}

// receive returns the next state on ch, and false once ch is closed.
func receive(t *testing.T, ch <-chan store.State) (store.State, bool) {
	t.Helper()
	select {
	case st, ok := <-ch:
		return st, ok
	case <-time.After(watchTimeout):
		require.FailNow(t, "watch delivered nothing and did not close", "waited %v", watchTimeout)
		return store.State{}, false
	}
}

func testWatchInOrder(t *testing.T, w store.Watcher, f Fixture, id string) {
	st := next(newState(id), func(s *store.State) { s.Version, s.Status = 1, store.StatusRunning })
	put(t, f.Store, st)
	ch, err := w.Watch(t.Context(), id)
	require.NoError(t, err)
	first, ok := receive(t, ch)
	require.True(t, ok, "the channel must first deliver the current state")
	requireState(t, st, first, "the first state delivered must be the current one")

	const last = 20
	written := make(chan error, 1)
	go func() {
		cur := st
		for cur.Version < last {
			cur = next(cur, func(s *store.State) {
				s.Progress.Done = s.Version
				if s.Version == last {
					s.Status = store.StatusSuccess
				}
			})
			if err := f.Store.Put(context.Background(), write(cur)); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()

	prev := first.Version
	var got store.State
	for {
		st, ok := receive(t, ch)
		if !ok {
			break
		}
		require.Greater(t, st.Version, prev, "versions delivered must strictly increase")
		require.Equal(t, st.Version, st.Progress.Done, "a delivered state must be the one written at its version")
		prev, got = st.Version, st
	}
	require.NoError(t, <-written)
	require.Equal(t, int64(last), got.Version, "the terminal state must be delivered before the channel closes")
	require.Equal(t, store.StatusSuccess, got.Status)
}

func testWatchAfterEnd(t *testing.T, w store.Watcher, f Fixture, id string) {
	st := next(newState(id), func(s *store.State) { s.Version, s.Status = 1, store.StatusFailed })
	put(t, f.Store, st)
	ch, err := w.Watch(t.Context(), id)
	require.NoError(t, err)
	got, ok := receive(t, ch)
	require.True(t, ok, "a watcher that starts after the end must get the terminal state")
	requireState(t, st, got)
	_, ok = receive(t, ch)
	require.False(t, ok, "the channel must close after the terminal state")
}

func testWatchCancel(t *testing.T, w store.Watcher, f Fixture, id string) {
	put(t, f.Store, newState(id))
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := w.Watch(ctx, id)
	require.NoError(t, err)
	_, ok := receive(t, ch)
	require.True(t, ok)
	cancel()
	for {
		if _, ok := receive(t, ch); !ok {
			return
		}
	}
}

func testWatchDelete(t *testing.T, w store.Watcher, f Fixture, id string) {
	put(t, f.Store, newState(id))
	ch, err := w.Watch(t.Context(), id)
	require.NoError(t, err)
	_, ok := receive(t, ch)
	require.True(t, ok)
	require.NoError(t, f.Store.Delete(t.Context(), id))
	for {
		if _, ok := receive(t, ch); !ok {
			return
		}
	}
}

// testWatchQuiet checks that a quiet write is not delivered on its own:
// the watcher sees the next write that is.
func testWatchQuiet(t *testing.T, w store.Watcher, f Fixture, id string) {
	st := next(newState(id), func(s *store.State) { s.Version, s.Status = 1, store.StatusRunning })
	put(t, f.Store, st)
	ch, err := w.Watch(t.Context(), id)
	require.NoError(t, err)
	_, ok := receive(t, ch)
	require.True(t, ok)

	renewal := next(st, func(s *store.State) { s.LeaseUntil = s.UpdatedAt.Add(time.Minute) })
	quiet := write(renewal)
	quiet.Quiet = true
	require.NoError(t, f.Store.Put(t.Context(), quiet))
	got, err := f.Store.Get(t.Context(), id)
	require.NoError(t, err)
	requireState(t, renewal, got, "a quiet write is stored like any other")

	done := next(renewal, func(s *store.State) { s.Status = store.StatusSuccess })
	put(t, f.Store, done)
	delivered, ok := receive(t, ch)
	require.True(t, ok)
	requireState(t, done, delivered, "after a quiet write, the watcher must get the next announced state, not the quiet one")
}

// testWatchCopiesOut checks that states delivered to watchers are theirs:
// changing one changes neither the store nor what other watchers get.
func testWatchCopiesOut(t *testing.T, w store.Watcher, f Fixture, id string) {
	st := richState(id)
	put(t, f.Store, st)
	a, err := w.Watch(t.Context(), id)
	require.NoError(t, err)
	b, err := w.Watch(t.Context(), id)
	require.NoError(t, err)
	first, ok := receive(t, a)
	require.True(t, ok)
	scribble(&first)
	other, ok := receive(t, b)
	require.True(t, ok)
	requireState(t, st, other, "changing a state one watcher got must not change another's")

	st = next(st, func(s *store.State) { s.Progress.Done = 1 })
	put(t, f.Store, st)
	got, ok := receive(t, a)
	require.True(t, ok)
	scribble(&got)
	got, ok = receive(t, b)
	require.True(t, ok)
	requireState(t, st, got, "changing a state one watcher got must not change another's")
	stored, err := f.Store.Get(t.Context(), id)
	require.NoError(t, err)
	requireState(t, st, stored, "changing a state a watcher got must not change the stored task")
}
