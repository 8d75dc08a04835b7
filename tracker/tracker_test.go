package tracker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)

// fixture is a tracker over a counting memstore, on a manual clock, that
// collects the errors it reports.
type fixture struct {
	tr     *tracker.Tracker
	mem    *memstore.Store
	store  *countingStore
	clock  *storetest.Clock
	mu     sync.Mutex
	errors []error
}

func newFixture(t testing.TB, opts ...tracker.Option) *fixture {
	t.Helper()
	clock := storetest.NewClock(t0)
	mem, err := memstore.New(memstore.WithClock(clock.Now))
	require.NoError(t, err)
	f := &fixture{mem: mem, store: &countingStore{Store: mem}, clock: clock}
	f.tr = f.tracker(t, f.store, opts...)
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	return f
}

// tracker returns a Tracker over s on the fixture's clock that reports to
// the fixture, closed when t ends.
func (f *fixture) tracker(t testing.TB, s store.Store, opts ...tracker.Option) *tracker.Tracker {
	t.Helper()
	opts = append([]tracker.Option{
		tracker.WithClock(f.clock.Now),
		tracker.WithErrorHandler(func(_ context.Context, err error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.errors = append(f.errors, err)
		}),
	}, opts...)
	tr, err := tracker.New(s, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tr.Close(context.Background())) })
	return tr
}

func (f *fixture) reported() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errors...)
}

func (f *fixture) get(t *testing.T, id string) store.State {
	t.Helper()
	st, err := f.tr.Get(t.Context(), id)
	require.NoError(t, err)
	return st
}

// create creates task id with steps, by id.
func (f *fixture) create(t *testing.T, id string, steps ...string) {
	t.Helper()
	require.NoError(t, f.tr.Apply(t.Context(), id, tracker.Create(steps...)))
}

// start creates task id with steps a and b and starts it.
func (f *fixture) start(t *testing.T, id string) *tracker.Run {
	t.Helper()
	f.create(t, id, "a", "b")
	run, err := f.tr.Start(t.Context(), id)
	require.NoError(t, err)
	return run
}

// countingStore counts the calls made to the store it wraps.
type countingStore struct {
	store.Store
	gets, puts atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, id string) (store.State, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

func (c *countingStore) Put(ctx context.Context, w store.Write) error {
	c.puts.Add(1)
	return c.Store.Put(ctx, w)
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := tracker.ContextWithCorrelationID(t.Context(), "abc-456-def")
	const id = "doc-123"
	steps := []string{"file_node_creation", "memgraph_storage", "embedding_generation"}

	_, err := f.tr.Get(ctx, id)
	require.ErrorIs(t, err, store.ErrNotFound, "before Create the task is unknown")

	require.NoError(t, f.tr.Apply(ctx, id, tracker.Create(steps...)))
	st := f.get(t, id)
	assert.Equal(t, store.StatusPending, st.Status, "a created task is pending, not unknown")
	assert.Equal(t, "abc-456-def", st.CorrelationID, "the correlation id comes from the context")
	assert.NotEmpty(t, st.Incarnation, "a created task has an incarnation")
	assert.Equal(t, t0, st.CreatedAt)
	assert.True(t, st.StartedAt.IsZero(), "a pending task has not started")
	require.Len(t, st.Steps, 3, "planned steps are visible at once")
	for _, s := range st.Steps {
		assert.Equal(t, store.StepPending, s.Status)
	}

	f.clock.Advance(time.Second)
	run, err := f.tr.Start(ctx, id)
	require.NoError(t, err)
	for i, name := range steps {
		f.clock.Advance(time.Second)
		require.NoError(t, run.Apply(ctx, tracker.StartStep(name)))
		require.NoError(t, run.Apply(ctx, tracker.SetProgress(store.Progress{Done: int64(i), Total: 3, Message: name})))
		f.clock.Advance(time.Second)
		require.NoError(t, run.Apply(ctx, tracker.SucceedStep(name)))
	}
	require.NoError(t, run.Apply(ctx, tracker.SetResult(map[string]any{"entities_extracted": 42, "vector_indexed": true})))
	f.clock.Advance(234 * time.Millisecond)
	require.NoError(t, run.Apply(ctx, tracker.Succeed()))

	st = f.get(t, id)
	assert.Equal(t, store.StatusSuccess, st.Status)
	assert.Equal(t, t0.Add(time.Second), st.StartedAt)
	assert.Equal(t, t0.Add(7234*time.Millisecond), st.CompletedAt)
	assert.Equal(t, st.CompletedAt, st.UpdatedAt)
	assert.Empty(t, st.ErrorMessage)
	assert.Equal(t, int64(13), st.Version, "one version per call: create, start, 3×3 step calls, result, succeed")
	assert.Equal(t, 1, st.Attempt)
	assert.JSONEq(t, `42`, string(st.Result["entities_extracted"]))
	assert.JSONEq(t, `true`, string(st.Result["vector_indexed"]))
	for i, s := range st.Steps {
		assert.Equal(t, steps[i], s.Name)
		assert.Equal(t, store.StepSuccess, s.Status)
		assert.Equal(t, t0.Add(time.Duration(2+2*i)*time.Second), s.StartedAt)
		assert.Equal(t, t0.Add(time.Duration(3+2*i)*time.Second), s.CompletedAt)
		assert.Equal(t, 1, s.Attempt)
	}
	assert.Empty(t, f.reported(), "a clean lifecycle reports no error")
}

// TestOneRoundTripPerTransition shows that each transition is one store
// call: a created task is started without a read, and a Run keeps the
// state it wrote.
func TestOneRoundTripPerTransition(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.create(t, "t1", "a", "b")
	run, err := f.tr.Start(ctx, "t1", tracker.StartStep("a"))
	require.NoError(t, err)
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a")))
	require.NoError(t, run.Apply(ctx, tracker.Succeed()))
	assert.Equal(t, int64(4), f.store.puts.Load(), "one write per transition")
	assert.Zero(t, f.store.gets.Load(), "no read before a write in the common case")
}

func TestRules(t *testing.T) {
	ctx := context.Background()
	type setup func(t *testing.T, f *fixture) *tracker.Run // brings task "task" to the state under test
	pending := func(t *testing.T, f *fixture) *tracker.Run { f.create(t, "task", "a", "b"); return nil }
	running := func(t *testing.T, f *fixture) *tracker.Run { return f.start(t, "task") }
	ended := func(c tracker.Change) setup {
		return func(t *testing.T, f *fixture) *tracker.Run {
			run := f.start(t, "task")
			require.NoError(t, run.Apply(ctx, c))
			return run
		}
	}
	succeeded, failed, canceled := ended(tracker.Succeed()), ended(tracker.Fail(errors.New("boom"), nil)), ended(tracker.Cancel(nil))
	stepEnded := ended(tracker.FailStep("a", errors.New("boom")))
	stepRunning := ended(tracker.StartStep("a"))
	byRun := func(changes ...tracker.Change) func(*fixture, *tracker.Run) error {
		return func(_ *fixture, run *tracker.Run) error { return run.Apply(ctx, changes...) }
	}
	byID := func(changes ...tracker.Change) func(*fixture, *tracker.Run) error {
		return func(f *fixture, _ *tracker.Run) error { return f.tr.Apply(ctx, "task", changes...) }
	}
	start := func(f *fixture, _ *tracker.Run) error { _, err := f.tr.Start(ctx, "task"); return err }
	for _, tc := range []struct {
		name  string
		setup setup
		call  func(f *fixture, run *tracker.Run) error
		want  error
	}{
		{"SucceedAfterFailed", failed, byRun(tracker.Succeed()), store.ErrTerminal},
		{"FailAfterSucceeded", succeeded, byRun(tracker.Fail(errors.New("late"), nil)), store.ErrTerminal},
		{"CancelAfterSucceeded", succeeded, byID(tracker.Cancel(nil)), store.ErrTerminal},
		{"StartTwice", running, start, store.ErrInvalidTransition},
		{"StartAfterEnd", canceled, start, store.ErrTerminal},
		{"CreateTwice", running, byID(tracker.Create()), store.ErrExists},
		{"CreateAfterEnd", failed, byID(tracker.Create()), store.ErrExists},
		{"SucceedPending", pending, byID(tracker.Succeed()), store.ErrInvalidTransition},
		{"StartStepAfterEnd", failed, byRun(tracker.StartStep("a")), store.ErrTerminal},
		{"SucceedStepAfterEnd", canceled, byRun(tracker.SucceedStep("a")), store.ErrTerminal},
		{"SkipStepAfterEnd", succeeded, byID(tracker.SkipStep("new")), store.ErrTerminal},
		{"ProgressAfterEnd", succeeded, byRun(tracker.SetProgress(store.Progress{Done: 1})), store.ErrTerminal},
		{"ResultAfterEnd", failed, byRun(tracker.SetResult(map[string]any{"n": 1})), store.ErrTerminal},
		{"HeartbeatAfterEnd", failed, byRun(tracker.Heartbeat()), store.ErrTerminal},
		{"StepAfterStepEnded", stepEnded, byRun(tracker.SucceedStep("a")), store.ErrTerminal},
		{"StartRunningStep", stepRunning, byRun(tracker.StartStep("a")), store.ErrInvalidTransition},
		{"RetryPendingStep", running, byRun(tracker.RetryStep("a", errors.New("x"))), store.ErrInvalidTransition},
		{"RetryRunningTask", running, byID(tracker.Retry()), store.ErrInvalidTransition},
		{"RetryUnknownTask", func(*testing.T, *fixture) *tracker.Run { return nil }, byID(tracker.Retry()), store.ErrNotFound},
		{"StartUnknownTask", func(*testing.T, *fixture) *tracker.Run { return nil }, start, store.ErrNotFound},
		{"ChangeUnknownTask", func(*testing.T, *fixture) *tracker.Run { return nil }, byID(tracker.StartStep("a")), store.ErrNotFound},
		{"InvalidID", pending, func(f *fixture, _ *tracker.Run) error { return f.tr.Apply(ctx, "a{b}", tracker.Create()) }, store.ErrInvalidID},
		{"EmptyStepName", running, byRun(tracker.StartStep("")), store.ErrInvalidInput},
		{"LongStepName", running, byRun(tracker.StartStep(strings.Repeat("s", tracker.MaxStepNameLen+1))), store.ErrTooLarge},
		{"NegativeProgress", running, byRun(tracker.SetProgress(store.Progress{Done: -1})), store.ErrInvalidInput},
		{"ProgressBeyondTotal", running, byRun(tracker.SetProgress(store.Progress{Done: 3, Total: 2})), store.ErrInvalidInput},
		{"UnencodableResult", running, byRun(tracker.SetResult(map[string]any{"ch": make(chan int)})), store.ErrInvalidInput},
		{"OversizedResult", running, byRun(tracker.SetResult(map[string]any{"blob": strings.Repeat("x", tracker.MaxFieldsSize)})), store.ErrTooLarge},
		{"CreateThroughRun", running, byRun(tracker.Create()), store.ErrInvalidInput},
		{"RetryThroughRun", running, byRun(tracker.Retry()), store.ErrInvalidInput},
		{"CreateNotFirst", pending, byID(tracker.SetResult(map[string]any{"n": 1}), tracker.Create()), store.ErrInvalidInput},
		{"NoChange", pending, byID(), store.ErrInvalidInput},
		{"KindAfterCreate", pending, byID(tracker.Kind("document")), store.ErrInvalidTransition},
		{"LabelThroughRun", running, byRun(tracker.Label("tenant", "a")), store.ErrInvalidTransition},
		{"InvalidKind", pending, byID(tracker.Kind("a kind")), store.ErrInvalidInput},
		{"InvalidLabel", pending, byID(tracker.Label("tenant", "")), store.ErrInvalidInput},
		{"ZeroChange", pending, byID(tracker.Change{}), store.ErrInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			run := tc.setup(t, f)
			before, beforeErr := f.tr.Get(ctx, "task")

			err := tc.call(f, run)
			require.Error(t, err, "the call must be refused")
			require.ErrorIs(t, err, tc.want)
			var te *tracker.Error
			require.ErrorAs(t, err, &te)
			require.Len(t, f.reported(), 1, "the refusal must be reported to the error handler")
			require.ErrorIs(t, f.reported()[0], err)

			after, afterErr := f.tr.Get(ctx, "task")
			require.Equal(t, beforeErr == nil, afterErr == nil)
			require.True(t, before.Equal(after), "a refused call must leave the task as it was:\nbefore %+v\nafter  %+v", before, after)
		})
	}
}

func TestFailRecordsErrorAndClosesSteps(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a")))
	require.NoError(t, run.Apply(ctx, tracker.StartStep("b")))
	f.create(t, "other", "x")
	cause := fmt.Errorf("vectorization failed: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")})
	require.NoError(t, run.Apply(ctx, tracker.Fail(cause, map[string]any{"project_id": "my-project", "attempts": 3})))

	st := f.get(t, "doc")
	assert.Equal(t, store.StatusFailed, st.Status)
	assert.Equal(t, cause.Error(), st.ErrorMessage)
	assert.JSONEq(t, `"net.OpError"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
	assert.JSONEq(t, `"my-project"`, string(st.ErrorDetails["project_id"]))
	assert.JSONEq(t, `3`, string(st.ErrorDetails["attempts"]))
	a, _ := st.Step("a")
	b, _ := st.Step("b")
	assert.Equal(t, store.StepSuccess, a.Status, "an ended step keeps its status")
	assert.Equal(t, store.StepFailed, b.Status, "a running step fails with the task")
	assert.Equal(t, cause.Error(), b.Error)
	assert.Equal(t, st.CompletedAt, b.CompletedAt)

	require.NoError(t, f.tr.Apply(ctx, "other", tracker.Cancel(nil)))
	other := f.get(t, "other")
	assert.Equal(t, store.StatusCanceled, other.Status)
	assert.Equal(t, "canceled", other.ErrorMessage)
	x, _ := other.Step("x")
	assert.Equal(t, store.StepSkipped, x.Status, "a pending step is skipped when the task ends")
	assert.True(t, other.StartedAt.IsZero(), "a task canceled while pending never started")
}

func TestSucceedClosesSteps(t *testing.T) {
	f := newFixture(t)
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(t.Context(), tracker.StartStep("a")))
	require.NoError(t, run.Apply(t.Context(), tracker.Succeed()))
	st := f.get(t, "doc")
	a, _ := st.Step("a")
	b, _ := st.Step("b")
	assert.Equal(t, store.StepSuccess, a.Status)
	assert.Equal(t, store.StepSkipped, b.Status)
}

func TestStepRetries(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	require.NoError(t, run.Apply(ctx, tracker.RetryStep("a", errors.New("timeout 1"))))
	require.NoError(t, run.Apply(ctx, tracker.RetryStep("a", errors.New("timeout 2"))))
	s, _ := f.get(t, "doc").Step("a")
	assert.Equal(t, 3, s.Attempt, "each retry is a new attempt")
	assert.Equal(t, store.StepRunning, s.Status)
	assert.Equal(t, "timeout 2", s.Error, "the last attempt's error is visible while retrying")
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a")))
	s, _ = f.get(t, "doc").Step("a")
	assert.Equal(t, store.StepSuccess, s.Status)
	assert.Equal(t, 3, s.Attempt)
	assert.Empty(t, s.Error)
}

func TestRetryStartsNewAttempt(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(ctx, tracker.Fail(errors.New("boom"), nil)))
	incarnation := f.get(t, "doc").Incarnation
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Retry()))
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusPending, st.Status)
	assert.Equal(t, 2, st.Attempt)
	assert.Equal(t, incarnation, st.Incarnation, "a retry is a new attempt of the same task")
	assert.Empty(t, st.ErrorMessage)
	assert.Nil(t, st.ErrorDetails)
	assert.True(t, st.CompletedAt.IsZero())
	assert.Equal(t, t0, st.CreatedAt)
	require.Len(t, st.Steps, 2)
	for _, s := range st.Steps {
		assert.Equal(t, store.StepPending, s.Status)
	}
	run2, err := f.tr.Start(ctx, "doc")
	require.NoError(t, err)
	require.NoError(t, run2.Apply(ctx, tracker.Succeed()))
	assert.Equal(t, store.StatusSuccess, f.get(t, "doc").Status)
}

// TestAbandonedTaskIsRetried shows that a task whose lease ended, because
// the process doing its work died, can start a new attempt at once rather
// than after its time to live.
func TestAbandonedTaskIsRetried(t *testing.T) {
	f := newFixture(t, tracker.WithLease(time.Minute))
	ctx := t.Context()
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	require.ErrorIs(t, f.tr.Apply(ctx, "doc", tracker.Retry()), store.ErrInvalidTransition,
		"a task whose work is alive is not retried")

	f.clock.Advance(time.Minute + time.Millisecond)
	require.True(t, f.get(t, "doc").Abandoned(f.clock.Now()))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Retry()))
	run2, err := f.tr.Start(ctx, "doc")
	require.NoError(t, err)
	require.NoError(t, run2.Apply(ctx, tracker.StartStep("a")))

	require.ErrorIs(t, run.Apply(ctx, tracker.SucceedStep("a")), store.ErrStale,
		"the first attempt's work, still going after all, can no longer record")
	require.NoError(t, run2.Apply(ctx, tracker.SucceedStep("a"), tracker.Succeed()))
	st := f.get(t, "doc")
	assert.Equal(t, 2, st.Attempt)
	assert.Equal(t, store.StatusSuccess, st.Status)
}

// TestConcurrentSteps has 64 goroutines each run a different step of one
// task through one Run, and another 64 record result fields through a
// second Tracker on the same store, as a second service instance would:
// every change is recorded.
func TestConcurrentSteps(t *testing.T) {
	f := newFixture(t)
	other := f.tracker(t, f.store)
	ctx := t.Context()
	run := f.start(t, "doc")

	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			step := fmt.Sprintf("step-%03d", i)
			assert.NoError(t, run.Apply(ctx, tracker.StartStep(step)))
			assert.NoError(t, run.Apply(ctx, tracker.SetResult(map[string]any{step: i})))
			assert.NoError(t, run.Apply(ctx, tracker.SucceedStep(step)))
		})
		wg.Go(func() {
			assert.NoError(t, other.Apply(ctx, "doc", tracker.SetResult(map[string]any{fmt.Sprintf("other-%03d", i): i})))
		})
	}
	wg.Wait()
	st := f.get(t, "doc")
	require.Len(t, st.Steps, 2+n, "no step may be lost")
	require.Len(t, st.Result, 2*n, "no result field may be lost")
	for _, s := range st.Steps[2:] {
		assert.Equal(t, store.StepSuccess, s.Status, s.Name)
	}
	assert.LessOrEqual(t, st.Version, int64(2+4*n), "at most one version per call: calls made at once share writes")
	assert.Empty(t, f.reported())
}

func TestCrossTrackerConflict(t *testing.T) {
	f := newFixture(t)
	other := f.tracker(t, f.store)
	ctx := t.Context()
	run := f.start(t, "doc")
	require.NoError(t, other.Apply(ctx, "doc", tracker.SetResult(map[string]any{"n": 1})), "another instance writes behind the run's back")

	gets := f.store.gets.Load()
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("b")))
	assert.Equal(t, gets+1, f.store.gets.Load(), "a conflict re-reads the task once")
	st := f.get(t, "doc")
	b, _ := st.Step("b")
	assert.JSONEq(t, `1`, string(st.Result["n"]), "the other instance's write is kept")
	assert.Equal(t, store.StepSuccess, b.Status)

	require.NoError(t, other.Apply(ctx, "doc", tracker.Cancel(errors.New("stop"))))
	err := run.Apply(ctx, tracker.Fail(errors.New("late"), nil))
	require.ErrorIs(t, err, store.ErrTerminal, "a late failure must not overwrite the other instance's end")
	assert.Equal(t, store.StatusCanceled, f.get(t, "doc").Status)
}

// TestRefusalIsJudgedOnTheStoredState shows that a change by id is not
// refused because of a cached state that another process made out of date.
func TestRefusalIsJudgedOnTheStoredState(t *testing.T) {
	f := newFixture(t)
	other := f.tracker(t, f.store)
	ctx := t.Context()
	f.create(t, "doc", "a")
	require.NoError(t, other.Delete(ctx, "doc"))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Create("b")), "the cached task was deleted elsewhere: it can be created")
	require.NoError(t, other.Apply(ctx, "doc", tracker.Cancel(nil)))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Retry()), "the cached pending task was canceled elsewhere: it can be retried")
}

func TestCorrelationIDLaterCall(t *testing.T) {
	f := newFixture(t)
	f.create(t, "doc")
	ctx := tracker.ContextWithCorrelationID(t.Context(), "req-1")
	run, err := f.tr.Start(ctx, "doc")
	require.NoError(t, err)
	assert.Equal(t, "req-1", f.get(t, "doc").CorrelationID, "a task without one takes the first it sees")
	ctx = tracker.ContextWithCorrelationID(t.Context(), "req-2")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	assert.Equal(t, "req-1", f.get(t, "doc").CorrelationID, "a recorded correlation id is kept")
}

func TestValidCorrelationID(t *testing.T) {
	for id, want := range map[string]bool{
		"c9a7f417-c2d2-48a3-802b-fa00e20dd207": true,
		"abc_456.def:1/2+3=@":                  true,
		"":                                     false,
		"has space":                            false,
		"new\nline":                            false,
		"ünïcode":                              false,
		strings.Repeat("a", tracker.MaxCorrelationIDLen):   true,
		strings.Repeat("a", tracker.MaxCorrelationIDLen+1): false,
	} {
		assert.Equal(t, want, tracker.ValidCorrelationID(id), "%q", id)
		ctx := tracker.ContextWithCorrelationID(context.Background(), id)
		kept := ""
		if want {
			kept = id
		}
		assert.Equal(t, kept, tracker.CorrelationID(ctx), "context keeps %q only if valid", id)
	}
}

func TestLimits(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")

	long := strings.Repeat("é", tracker.MaxMessageLen)
	require.NoError(t, run.Apply(ctx, tracker.SetProgress(store.Progress{Done: 1, Message: long})))
	msg := f.get(t, "doc").Progress.Message
	assert.LessOrEqual(t, len(msg), tracker.MaxMessageLen)
	assert.True(t, strings.HasSuffix(msg, tracker.TruncatedMarker), "a cut message says so")
	assert.True(t, strings.HasPrefix(long, strings.TrimSuffix(msg, tracker.TruncatedMarker)), "cut on a character boundary")

	details := map[string]any{"trace": strings.Repeat("x", tracker.MaxFieldsSize), "unencodable": make(chan int)}
	require.NoError(t, run.Apply(ctx, tracker.Fail(errors.New(long), details)), "oversized details never stop a failure from being recorded")
	st := f.get(t, "doc")
	assert.True(t, strings.HasSuffix(st.ErrorMessage, tracker.TruncatedMarker))
	assert.Contains(t, st.ErrorDetails, tracker.DetailsTruncatedKey)
	assert.JSONEq(t, `"error"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
	assert.NotContains(t, st.ErrorDetails, "trace")

	f.create(t, "many")
	for i := range tracker.MaxSteps {
		require.NoError(t, f.tr.Apply(ctx, "many", tracker.SkipStep(fmt.Sprint(i))))
	}
	require.ErrorIs(t, f.tr.Apply(ctx, "many", tracker.SkipStep("one more")), store.ErrTooLarge)
	names := make([]string, tracker.MaxSteps+1)
	for i := range names {
		names[i] = fmt.Sprint(i)
	}
	require.ErrorIs(t, f.tr.Apply(ctx, "planned", tracker.Create(names...)), store.ErrTooLarge)
	require.ErrorIs(t, f.tr.Apply(ctx, "planned", tracker.Create("")), store.ErrInvalidInput)
}

func TestUnencodableDetailIsKeptAsText(t *testing.T) {
	f := newFixture(t)
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(t.Context(), tracker.Fail(errors.New("x"), map[string]any{"f": func() {}, tracker.ExceptionTypeKey: "ConnectionError"})))
	st := f.get(t, "doc")
	var s string
	require.NoError(t, json.Unmarshal(st.ErrorDetails["f"], &s))
	assert.NotEmpty(t, s)
	assert.JSONEq(t, `"ConnectionError"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]), "a caller's exception_type wins")
}

type connError struct{}

func (*connError) Error() string { return "connection refused" }

func TestErrorType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("x"), "error"},
		{fmt.Errorf("x"), "error"},
		{fmt.Errorf("a: %w", &connError{}), "tracker_test.connError"},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", &net.OpError{})), "net.OpError"},
		{fmt.Errorf("a: %w, %w", &connError{}, errors.New("y")), "error"},
		{context.DeadlineExceeded, "context.deadlineExceededError"},
		{&tracker.Error{Op: "x", Err: errors.New("y")}, "tracker.Error"},
	} {
		assert.Equal(t, tc.want, tracker.ErrorType(tc.err), "%#v", tc.err)
	}
}

func TestOptions(t *testing.T) {
	mem, err := memstore.New()
	require.NoError(t, err)
	defer mem.Close()
	for name, opt := range map[string]tracker.Option{
		"negative TTL":     tracker.WithTTL(-time.Second),
		"negative lease":   tracker.WithLease(-time.Second),
		"nil clock":        tracker.WithClock(nil),
		"zero timeout":     tracker.WithTimeout(0),
		"nil handler":      tracker.WithErrorHandler(nil),
		"negative timeout": tracker.WithTimeout(-1),
	} {
		_, err := tracker.New(mem, opt)
		require.Error(t, err, name)
	}
	_, err = tracker.New(nil)
	require.Error(t, err, "nil store")
}

func TestTTL(t *testing.T) {
	f := newFixture(t, tracker.WithTTL(time.Hour))
	ctx := t.Context()
	run := f.start(t, "doc")
	f.clock.Advance(59 * time.Minute)
	require.NoError(t, run.Apply(ctx, tracker.Succeed()), "a write within the TTL")
	f.clock.Advance(59 * time.Minute)
	_, err := f.tr.Get(ctx, "doc")
	require.NoError(t, err, "each write restarts the TTL")
	f.clock.Advance(2 * time.Minute)
	_, err = f.tr.Get(ctx, "doc")
	require.ErrorIs(t, err, store.ErrNotFound, "the task expires TTL after its last write")
}

func TestDelete(t *testing.T) {
	f := newFixture(t)
	f.create(t, "doc")
	require.NoError(t, f.tr.Delete(t.Context(), "doc"))
	_, err := f.tr.Get(t.Context(), "doc")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = f.tr.Start(t.Context(), "doc")
	require.ErrorIs(t, err, store.ErrNotFound, "a deleted task is not started from the cache")
	f.create(t, "doc")
}

// TestGetReturnsCopy checks that a caller changing what Get returned does
// not change the recorded task.
func TestGetReturnsCopy(t *testing.T) {
	f := newFixture(t)
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(t.Context(), tracker.SetResult(map[string]any{"n": 1})))
	st := f.get(t, "doc")
	st.Steps[0].Status = store.StepFailed
	st.Result["n"] = json.RawMessage(`2`)
	again := f.get(t, "doc")
	assert.Equal(t, store.StepPending, again.Steps[0].Status)
	assert.JSONEq(t, `1`, string(again.Result["n"]))
}

func TestLeaseMakesAbandonedTasksVisible(t *testing.T) {
	f := newFixture(t, tracker.WithLease(time.Minute))
	ctx := t.Context()
	f.create(t, "doc")
	assert.Equal(t, f.clock.Now().Add(time.Minute), f.get(t, "doc").LeaseUntil, "a created task waits for its work within the lease")
	run, err := f.tr.Start(ctx, "doc")
	require.NoError(t, err)
	st := f.get(t, "doc")
	assert.Equal(t, f.clock.Now().Add(time.Minute), st.LeaseUntil)
	assert.False(t, st.Abandoned(f.clock.Now()))

	f.clock.Advance(50 * time.Second)
	require.NoError(t, run.Apply(ctx, tracker.Heartbeat()))
	f.clock.Advance(50 * time.Second)
	assert.False(t, f.get(t, "doc").Abandoned(f.clock.Now()), "a heartbeat renews the lease")

	f.clock.Advance(11 * time.Second)
	assert.True(t, f.get(t, "doc").Abandoned(f.clock.Now()), "no write for longer than the lease: the work was abandoned")

	require.NoError(t, run.Apply(ctx, tracker.Succeed()))
	st = f.get(t, "doc")
	assert.True(t, st.LeaseUntil.IsZero(), "an ended task holds no lease")
	f.clock.Advance(time.Hour)
	assert.False(t, st.Abandoned(f.clock.Now()), "an ended task is never abandoned")
}

func TestNoLeaseByDefault(t *testing.T) {
	f := newFixture(t)
	f.start(t, "doc")
	f.clock.Advance(23 * time.Hour)
	st := f.get(t, "doc")
	assert.True(t, st.LeaseUntil.IsZero())
	assert.False(t, st.Abandoned(f.clock.Now()))
}

// TestHeartbeatIsQuiet shows that a heartbeat renews the lease and nothing
// else, and is not delivered to watchers.
func TestHeartbeatIsQuiet(t *testing.T) {
	f := newFixture(t, tracker.WithLease(time.Minute))
	ctx := t.Context()
	run := f.start(t, "doc")
	before := f.get(t, "doc")
	ch, err := f.mem.Watch(ctx, "doc")
	require.NoError(t, err)
	<-ch

	f.clock.Advance(30 * time.Second)
	require.NoError(t, run.Apply(ctx, tracker.Heartbeat()))
	after := f.get(t, "doc")
	assert.Equal(t, before.Version+1, after.Version)
	assert.Equal(t, before.UpdatedAt, after.UpdatedAt, "a heartbeat changes nothing a client reads as news")
	assert.Equal(t, f.clock.Now().Add(time.Minute), after.LeaseUntil)
	after.Version, after.LeaseUntil = before.Version, before.LeaseUntil
	assert.True(t, before.Equal(after), "a heartbeat renews the lease only")
	select {
	case st := <-ch:
		t.Fatalf("a heartbeat was delivered to a watcher: version %d", st.Version)
	default:
	}

	require.NoError(t, run.Apply(ctx, tracker.StartStep("a"), tracker.Heartbeat()))
	assert.Equal(t, after.Version+2, (<-ch).Version, "a heartbeat with another change is an ordinary write")
}

func TestApplyIsOneAtomicWrite(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	puts := f.store.puts.Load()
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b"),
		tracker.SetProgress(store.Progress{Done: 1, Total: 2})))
	assert.Equal(t, puts+1, f.store.puts.Load(), "several changes are one write")
	st := f.get(t, "doc")
	a, _ := st.Step("a")
	b, _ := st.Step("b")
	assert.Equal(t, store.StepSuccess, a.Status)
	assert.Equal(t, store.StepRunning, b.Status)
	assert.Equal(t, int64(1), st.Progress.Done)

	before := f.get(t, "doc")
	err := run.Apply(ctx, tracker.SucceedStep("b"), tracker.StartStep("a"))
	require.ErrorIs(t, err, store.ErrTerminal, "a refused change refuses them all")
	var te *tracker.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "apply succeed step, start step", te.Op)
	assert.Contains(t, err.Error(), "start step: ", "the error names the refused change")
	assert.True(t, before.Equal(f.get(t, "doc")), "nothing of a refused Apply is written")
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("b")), "a refused Apply leaves the run as it was")
}

func TestCreateWithResultIsOneWrite(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, f.tr.Apply(t.Context(), "doc", tracker.Create("a"), tracker.SetResult(map[string]any{"entities_extracted": 42})))
	assert.Equal(t, int64(1), f.store.puts.Load())
	st := f.get(t, "doc")
	assert.Equal(t, int64(1), st.Version)
	assert.JSONEq(t, `42`, string(st.Result["entities_extracted"]))
}

// TestKindAndLabels: a task's kind and labels are set with its creation,
// kept by every write and by a new attempt.
func TestKindAndLabels(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Create("a"), tracker.Kind("document"),
		tracker.Label("project_id", "my-project"), tracker.Label("tenant", "acme")))
	run, err := f.tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.NoError(t, err)
	require.NoError(t, run.Apply(ctx, tracker.Fail(errors.New("boom"), nil)))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Retry()))
	st := f.get(t, "doc")
	assert.Equal(t, "document", st.Kind)
	assert.Equal(t, map[string]string{"project_id": "my-project", "tenant": "acme"}, st.Labels)

	labels := []tracker.Change{tracker.Create()}
	for i := range store.MaxLabels + 1 {
		labels = append(labels, tracker.Label(fmt.Sprint("k", i), "v"))
	}
	require.ErrorIs(t, f.tr.Apply(ctx, "many", labels...), store.ErrInvalidInput, "at most store.MaxLabels labels")
}

func TestRetryTakesTheNewCorrelationID(t *testing.T) {
	f := newFixture(t)
	ctx := tracker.ContextWithCorrelationID(t.Context(), "first")
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Create()))
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.Cancel(nil)))
	require.NoError(t, f.tr.Apply(tracker.ContextWithCorrelationID(t.Context(), "second"), "doc", tracker.Retry()))
	assert.Equal(t, "second", f.get(t, "doc").CorrelationID, "a new attempt belongs to the request that asked for it")
	require.NoError(t, f.tr.Apply(t.Context(), "doc", tracker.Cancel(nil)))
	require.NoError(t, f.tr.Apply(t.Context(), "doc", tracker.Retry()))
	assert.Equal(t, "second", f.get(t, "doc").CorrelationID, "without a new one, the id is kept")
}

// TestWritesNeverChangeAStateAlreadyRead checks that the tracker edits
// copies: a state a reader holds, or a Run wrote, never changes.
func TestWritesNeverChangeAStateAlreadyRead(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	run := f.start(t, "doc")
	require.NoError(t, run.Apply(ctx, tracker.StartStep("a")))
	read, err := f.store.Get(ctx, "doc")
	require.NoError(t, err)
	before := read.Clone()

	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b"), tracker.StartStep("c")))
	require.NoError(t, run.Apply(ctx, tracker.Fail(errors.New("boom"), nil)))
	require.True(t, before.Equal(read), "a write changed a state a reader holds:\nbefore %+v\nafter  %+v", before, read)
}

// TestCacheSize: with room for a thousand tasks, a thousand are written
// again without a read; with room for few, the tasks forgotten are read
// first.
func TestCacheSize(t *testing.T) {
	for _, tc := range []struct {
		size      int
		readsLeft bool
	}{{4 << 20, false}, {64 << 10, true}} {
		f := newFixture(t, tracker.WithCacheSize(tc.size))
		ctx := t.Context()
		for i := range 1000 {
			require.NoError(t, f.tr.Apply(ctx, fmt.Sprint("task-", i), tracker.Create(benchSteps...)))
		}
		gets := f.store.gets.Load()
		for i := range 1000 {
			require.NoError(t, f.tr.Apply(ctx, fmt.Sprint("task-", i), tracker.SetProgress(store.Progress{Done: 1})))
		}
		reads := f.store.gets.Load() - gets
		if tc.readsLeft {
			assert.Positive(t, reads, "%d bytes keep fewer than 1,000 tasks", tc.size)
		} else {
			assert.Zero(t, reads, "%d bytes keep 1,000 tasks", tc.size)
		}
	}
	_, err := tracker.New(newFixture(t).store, tracker.WithCacheSize(0))
	require.Error(t, err)
}

// TestCacheKeepsNewTasks shows that the Tracker keeps caching the tasks it
// creates however many it created before: the last of 20,000 is started
// without a read, and the cache forgets tasks it has not written for a
// while (one created first needs a read).
func TestCacheKeepsNewTasks(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	for i := range 20_000 {
		require.NoError(t, f.tr.Apply(ctx, fmt.Sprint("task-", i), tracker.Create(benchSteps...)))
	}
	gets := f.store.gets.Load()
	_, err := f.tr.Start(ctx, "task-19999")
	require.NoError(t, err)
	assert.Equal(t, gets, f.store.gets.Load(), "the newest task is started without a read")
	_, err = f.tr.Start(ctx, "task-0")
	require.NoError(t, err)
	assert.Equal(t, gets+1, f.store.gets.Load(), "a task written long ago was forgotten: it is read")
}
