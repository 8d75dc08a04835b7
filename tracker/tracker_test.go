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
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	f := &fixture{store: &countingStore{Store: mem}, clock: clock}
	opts = append([]tracker.Option{
		tracker.WithClock(clock.Now),
		tracker.WithErrorHandler(func(_ context.Context, err error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.errors = append(f.errors, err)
		}),
	}, opts...)
	f.tr, err = tracker.New(f.store, opts...)
	require.NoError(t, err)
	return f
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

// countingStore counts the calls made to the store it wraps.
type countingStore struct {
	store.Store
	gets, puts atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, id string) (store.State, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, id)
}

func (c *countingStore) Put(ctx context.Context, st store.State, ttl time.Duration) error {
	c.puts.Add(1)
	return c.Store.Put(ctx, st, ttl)
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := tracker.ContextWithCorrelationID(t.Context(), "abc-456-def")
	const id = "doc-123"
	steps := []string{"file_node_creation", "memgraph_storage", "embedding_generation"}

	_, err := f.tr.Get(ctx, id)
	require.ErrorIs(t, err, store.ErrNotFound, "before Create the task is unknown")

	require.NoError(t, f.tr.Create(ctx, id, steps...))
	st := f.get(t, id)
	assert.Equal(t, store.StatusPending, st.Status, "a created task is pending, not unknown")
	assert.Equal(t, "abc-456-def", st.CorrelationID, "the correlation id comes from the context")
	assert.Equal(t, t0, st.CreatedAt)
	assert.True(t, st.StartedAt.IsZero(), "a pending task has not started")
	require.Len(t, st.Steps, 3, "planned steps are visible at once")
	for _, s := range st.Steps {
		assert.Equal(t, store.StepPending, s.Status)
	}

	f.clock.Advance(time.Second)
	require.NoError(t, f.tr.Start(ctx, id))
	for i, name := range steps {
		f.clock.Advance(time.Second)
		require.NoError(t, f.tr.StartStep(ctx, id, name))
		require.NoError(t, f.tr.SetProgress(ctx, id, store.Progress{Done: int64(i), Total: 3, Message: name}))
		f.clock.Advance(time.Second)
		require.NoError(t, f.tr.SucceedStep(ctx, id, name))
	}
	require.NoError(t, f.tr.SetResult(ctx, id, map[string]any{"entities_extracted": 42, "vector_indexed": true}))
	f.clock.Advance(234 * time.Millisecond)
	require.NoError(t, f.tr.Succeed(ctx, id))

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

// TestOneRoundTripPerTransition shows that a Tracker writing a task pays one
// store call per transition: it keeps the state it last wrote.
func TestOneRoundTripPerTransition(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	require.NoError(t, f.tr.Create(ctx, "t1", "a", "b"))
	require.NoError(t, f.tr.Start(ctx, "t1"))
	require.NoError(t, f.tr.StartStep(ctx, "t1", "a"))
	require.NoError(t, f.tr.SucceedStep(ctx, "t1", "a"))
	require.NoError(t, f.tr.Succeed(ctx, "t1"))
	assert.Equal(t, int64(5), f.store.puts.Load(), "one write per transition")
	assert.Zero(t, f.store.gets.Load(), "no read before a write in the common case")
}

func TestRules(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(tr *tracker.Tracker, id string) // brings the task to the state under test
		call  func(tr *tracker.Tracker, id string) error
		want  error
	}{
		{"SucceedAfterFailed", failed, succeed, store.ErrTerminal},
		{"FailAfterSucceeded", succeeded, func(tr *tracker.Tracker, id string) error {
			return tr.Fail(ctx, id, errors.New("late"), nil)
		}, store.ErrTerminal},
		{"CancelAfterSucceeded", succeeded, func(tr *tracker.Tracker, id string) error { return tr.Cancel(ctx, id, nil) }, store.ErrTerminal},
		{"StartTwice", running, func(tr *tracker.Tracker, id string) error { return tr.Start(ctx, id, "other") }, store.ErrInvalidTransition},
		{"CreateTwice", running, func(tr *tracker.Tracker, id string) error { return tr.Create(ctx, id) }, store.ErrExists},
		{"CreateAfterEnd", failed, func(tr *tracker.Tracker, id string) error { return tr.Create(ctx, id) }, store.ErrExists},
		{"SucceedPending", pending, succeed, store.ErrInvalidTransition},
		{"StartStepAfterEnd", failed, func(tr *tracker.Tracker, id string) error { return tr.StartStep(ctx, id, "a") }, store.ErrTerminal},
		{"SucceedStepAfterEnd", canceled, func(tr *tracker.Tracker, id string) error { return tr.SucceedStep(ctx, id, "a") }, store.ErrTerminal},
		{"SkipStepAfterEnd", succeeded, func(tr *tracker.Tracker, id string) error { return tr.SkipStep(ctx, id, "new") }, store.ErrTerminal},
		{"ProgressAfterEnd", succeeded, func(tr *tracker.Tracker, id string) error {
			return tr.SetProgress(ctx, id, store.Progress{Done: 1})
		}, store.ErrTerminal},
		{"ResultAfterEnd", failed, func(tr *tracker.Tracker, id string) error {
			return tr.SetResult(ctx, id, map[string]any{"n": 1})
		}, store.ErrTerminal},
		{"StepAfterStepEnded", func(tr *tracker.Tracker, id string) {
			running(tr, id)
			must(tr.FailStep(ctx, id, "a", errors.New("boom")))
		}, func(tr *tracker.Tracker, id string) error { return tr.SucceedStep(ctx, id, "a") }, store.ErrTerminal},
		{"StartRunningStep", func(tr *tracker.Tracker, id string) {
			running(tr, id)
			must(tr.StartStep(ctx, id, "a"))
		}, func(tr *tracker.Tracker, id string) error { return tr.StartStep(ctx, id, "a") }, store.ErrInvalidTransition},
		{"RetryPendingStep", running, func(tr *tracker.Tracker, id string) error {
			return tr.RetryStep(ctx, id, "a", errors.New("x"))
		}, store.ErrInvalidTransition},
		{"RetryRunningTask", running, func(tr *tracker.Tracker, id string) error { return tr.Retry(ctx, id) }, store.ErrInvalidTransition},
		{"UnknownTask", func(*tracker.Tracker, string) {}, func(tr *tracker.Tracker, id string) error { return tr.Start(ctx, id) }, store.ErrNotFound},
		{"InvalidID", pending, func(tr *tracker.Tracker, _ string) error { return tr.Start(ctx, "a{b}") }, store.ErrInvalidID},
		{"EmptyStepName", running, func(tr *tracker.Tracker, id string) error { return tr.StartStep(ctx, id, "") }, store.ErrInvalidInput},
		{"LongStepName", running, func(tr *tracker.Tracker, id string) error {
			return tr.StartStep(ctx, id, strings.Repeat("s", tracker.MaxStepNameLen+1))
		}, store.ErrTooLarge},
		{"NegativeProgress", running, func(tr *tracker.Tracker, id string) error {
			return tr.SetProgress(ctx, id, store.Progress{Done: -1})
		}, store.ErrInvalidInput},
		{"ProgressBeyondTotal", running, func(tr *tracker.Tracker, id string) error {
			return tr.SetProgress(ctx, id, store.Progress{Done: 3, Total: 2})
		}, store.ErrInvalidInput},
		{"UnencodableResult", running, func(tr *tracker.Tracker, id string) error {
			return tr.SetResult(ctx, id, map[string]any{"ch": make(chan int)})
		}, store.ErrInvalidInput},
		{"OversizedResult", running, func(tr *tracker.Tracker, id string) error {
			return tr.SetResult(ctx, id, map[string]any{"blob": strings.Repeat("x", tracker.MaxFieldsSize)})
		}, store.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			const id = "task"
			tc.setup(f.tr, id)
			before, beforeErr := f.tr.Get(ctx, id)

			err := tc.call(f.tr, id)
			require.Error(t, err, "the call must be refused")
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
			var te *tracker.Error
			require.ErrorAs(t, err, &te)
			require.Len(t, f.reported(), 1, "the refusal must be reported to the error handler")
			require.ErrorIs(t, f.reported()[0], err)

			after, afterErr := f.tr.Get(ctx, id)
			require.Equal(t, beforeErr == nil, afterErr == nil)
			require.True(t, before.Equal(after), "a refused call must leave the task as it was:\nbefore %+v\nafter  %+v", before, after)
		})
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func pending(tr *tracker.Tracker, id string) { must(tr.Create(context.Background(), id, "a", "b")) }

func running(tr *tracker.Tracker, id string) {
	pending(tr, id)
	must(tr.Start(context.Background(), id))
}

func succeeded(tr *tracker.Tracker, id string) {
	running(tr, id)
	must(tr.Succeed(context.Background(), id))
}

func failed(tr *tracker.Tracker, id string) {
	running(tr, id)
	must(tr.Fail(context.Background(), id, errors.New("boom"), nil))
}

func canceled(tr *tracker.Tracker, id string) {
	running(tr, id)
	must(tr.Cancel(context.Background(), id, nil))
}

func succeed(tr *tracker.Tracker, id string) error { return tr.Succeed(context.Background(), id) }

func TestFailRecordsErrorAndClosesSteps(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	running(f.tr, "doc")
	require.NoError(t, f.tr.SucceedStep(ctx, "doc", "a"))
	require.NoError(t, f.tr.StartStep(ctx, "doc", "b"))
	require.NoError(t, f.tr.Create(ctx, "other", "x"))
	cause := fmt.Errorf("vectorization failed: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")})
	require.NoError(t, f.tr.Fail(ctx, "doc", cause, map[string]any{"project_id": "my-project", "attempts": 3}))

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

	require.NoError(t, f.tr.Cancel(ctx, "other", nil))
	other := f.get(t, "other")
	assert.Equal(t, store.StatusCanceled, other.Status)
	assert.Equal(t, "canceled", other.ErrorMessage)
	x, _ := other.Step("x")
	assert.Equal(t, store.StepSkipped, x.Status, "a pending step is skipped when the task ends")
	assert.True(t, other.StartedAt.IsZero(), "a task canceled while pending never started")
}

func TestSucceedClosesSteps(t *testing.T) {
	f := newFixture(t)
	running(f.tr, "doc")
	require.NoError(t, f.tr.StartStep(t.Context(), "doc", "a"))
	require.NoError(t, f.tr.Succeed(t.Context(), "doc"))
	st := f.get(t, "doc")
	a, _ := st.Step("a")
	b, _ := st.Step("b")
	assert.Equal(t, store.StepSuccess, a.Status)
	assert.Equal(t, store.StepSkipped, b.Status)
}

func TestStepRetries(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	running(f.tr, "doc")
	require.NoError(t, f.tr.StartStep(ctx, "doc", "a"))
	require.NoError(t, f.tr.RetryStep(ctx, "doc", "a", errors.New("timeout 1")))
	require.NoError(t, f.tr.RetryStep(ctx, "doc", "a", errors.New("timeout 2")))
	s, _ := f.get(t, "doc").Step("a")
	assert.Equal(t, 3, s.Attempt, "each retry is a new attempt")
	assert.Equal(t, store.StepRunning, s.Status)
	assert.Equal(t, "timeout 2", s.Error, "the last attempt's error is visible while retrying")
	require.NoError(t, f.tr.SucceedStep(ctx, "doc", "a"))
	s, _ = f.get(t, "doc").Step("a")
	assert.Equal(t, store.StepSuccess, s.Status)
	assert.Equal(t, 3, s.Attempt)
	assert.Empty(t, s.Error)
}

func TestRetryStartsNewAttempt(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	failed(f.tr, "doc")
	require.NoError(t, f.tr.Retry(ctx, "doc"))
	st := f.get(t, "doc")
	assert.Equal(t, store.StatusPending, st.Status)
	assert.Equal(t, 2, st.Attempt)
	assert.Empty(t, st.ErrorMessage)
	assert.Nil(t, st.ErrorDetails)
	assert.True(t, st.CompletedAt.IsZero())
	assert.Equal(t, t0, st.CreatedAt)
	require.Len(t, st.Steps, 2)
	for _, s := range st.Steps {
		assert.Equal(t, store.StepPending, s.Status)
	}
	require.NoError(t, f.tr.Start(ctx, "doc"))
	require.NoError(t, f.tr.Succeed(ctx, "doc"))
	assert.Equal(t, store.StatusSuccess, f.get(t, "doc").Status)
}

// TestConcurrentSteps has 64 goroutines each run a different step of one
// task through one Tracker, and another 64 through a second Tracker on the
// same store, as a second service instance would: every step is recorded.
func TestConcurrentSteps(t *testing.T) {
	f := newFixture(t)
	other, err := tracker.New(f.store, tracker.WithClock(f.clock.Now))
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, f.tr.Create(ctx, "doc"))
	require.NoError(t, f.tr.Start(ctx, "doc"))

	const perTracker = 64
	var wg sync.WaitGroup
	for i := range 2 * perTracker {
		tr := f.tr
		if i >= perTracker {
			tr = other
		}
		wg.Go(func() {
			step := fmt.Sprintf("step-%03d", i)
			assert.NoError(t, tr.StartStep(ctx, "doc", step))
			assert.NoError(t, tr.SetResult(ctx, "doc", map[string]any{step: i}))
			assert.NoError(t, tr.SucceedStep(ctx, "doc", step))
		})
	}
	wg.Wait()
	st := f.get(t, "doc")
	require.Len(t, st.Steps, 2*perTracker, "no step may be lost")
	require.Len(t, st.Result, 2*perTracker, "no result field may be lost")
	for _, s := range st.Steps {
		assert.Equal(t, store.StepSuccess, s.Status, s.Name)
	}
	assert.Equal(t, int64(2+3*2*perTracker), st.Version, "one version per call")
}

func TestCrossTrackerConflict(t *testing.T) {
	f := newFixture(t)
	other, err := tracker.New(f.store, tracker.WithClock(f.clock.Now))
	require.NoError(t, err)
	ctx := t.Context()
	running(f.tr, "doc")
	require.NoError(t, other.SucceedStep(ctx, "doc", "a"), "another instance writes behind f.tr's back")

	gets := f.store.gets.Load()
	require.NoError(t, f.tr.SucceedStep(ctx, "doc", "b"))
	assert.Equal(t, gets+1, f.store.gets.Load(), "a conflict re-reads the task once")
	st := f.get(t, "doc")
	a, _ := st.Step("a")
	b, _ := st.Step("b")
	assert.Equal(t, store.StepSuccess, a.Status, "the other instance's write is kept")
	assert.Equal(t, store.StepSuccess, b.Status)

	require.NoError(t, other.Succeed(ctx, "doc"))
	err = f.tr.Fail(ctx, "doc", errors.New("late"), nil)
	require.ErrorIs(t, err, store.ErrTerminal, "a late failure must not overwrite the other instance's success")
	assert.Equal(t, store.StatusSuccess, f.get(t, "doc").Status)
}

func TestCorrelationIDLaterCall(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, f.tr.Create(t.Context(), "doc"))
	ctx := tracker.ContextWithCorrelationID(t.Context(), "req-1")
	require.NoError(t, f.tr.Start(ctx, "doc"))
	assert.Equal(t, "req-1", f.get(t, "doc").CorrelationID, "a task without one takes the first it sees")
	ctx = tracker.ContextWithCorrelationID(t.Context(), "req-2")
	require.NoError(t, f.tr.StartStep(ctx, "doc", "a"))
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
	running(f.tr, "doc")

	long := strings.Repeat("é", tracker.MaxMessageLen)
	require.NoError(t, f.tr.SetProgress(ctx, "doc", store.Progress{Done: 1, Message: long}))
	msg := f.get(t, "doc").Progress.Message
	assert.LessOrEqual(t, len(msg), tracker.MaxMessageLen)
	assert.True(t, strings.HasSuffix(msg, tracker.TruncatedMarker), "a cut message says so")
	assert.True(t, strings.HasPrefix(long, strings.TrimSuffix(msg, tracker.TruncatedMarker)), "cut on a character boundary")

	details := map[string]any{"trace": strings.Repeat("x", tracker.MaxFieldsSize), "unencodable": make(chan int)}
	require.NoError(t, f.tr.Fail(ctx, "doc", errors.New(long), details), "oversized details never stop a failure from being recorded")
	st := f.get(t, "doc")
	assert.True(t, strings.HasSuffix(st.ErrorMessage, tracker.TruncatedMarker))
	assert.Contains(t, st.ErrorDetails, tracker.DetailsTruncatedKey)
	assert.JSONEq(t, `"error"`, string(st.ErrorDetails[tracker.ExceptionTypeKey]))
	assert.NotContains(t, st.ErrorDetails, "trace")

	require.NoError(t, f.tr.Create(ctx, "many"))
	for i := range tracker.MaxSteps {
		require.NoError(t, f.tr.SkipStep(ctx, "many", fmt.Sprint(i)))
	}
	require.ErrorIs(t, f.tr.SkipStep(ctx, "many", "one more"), store.ErrTooLarge)
	names := make([]string, tracker.MaxSteps+1)
	for i := range names {
		names[i] = fmt.Sprint(i)
	}
	require.ErrorIs(t, f.tr.Create(ctx, "planned", names...), store.ErrTooLarge)
	require.ErrorIs(t, f.tr.Create(ctx, "planned", ""), store.ErrInvalidInput)
}

func TestUnencodableDetailIsKeptAsText(t *testing.T) {
	f := newFixture(t)
	running(f.tr, "doc")
	require.NoError(t, f.tr.Fail(t.Context(), "doc", errors.New("x"), map[string]any{"f": func() {}, tracker.ExceptionTypeKey: "ConnectionError"}))
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
	running(f.tr, "doc")
	f.clock.Advance(59 * time.Minute)
	require.NoError(t, f.tr.Succeed(ctx, "doc"), "a write within the TTL")
	f.clock.Advance(59 * time.Minute)
	_, err := f.tr.Get(ctx, "doc")
	require.NoError(t, err, "each write restarts the TTL")
	f.clock.Advance(2 * time.Minute)
	_, err = f.tr.Get(ctx, "doc")
	require.ErrorIs(t, err, store.ErrNotFound, "the task expires TTL after its last write")
}

func TestDelete(t *testing.T) {
	f := newFixture(t)
	running(f.tr, "doc")
	require.NoError(t, f.tr.Delete(t.Context(), "doc"))
	_, err := f.tr.Get(t.Context(), "doc")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, f.tr.Start(t.Context(), "doc"), store.ErrNotFound, "a deleted task is not written from the cache")
	require.NoError(t, f.tr.Create(t.Context(), "doc"), "a deleted id can be created again")
}

// TestGetReturnsCopy checks that a caller changing what Get returned does
// not change the recorded task.
func TestGetReturnsCopy(t *testing.T) {
	f := newFixture(t)
	running(f.tr, "doc")
	require.NoError(t, f.tr.SetResult(t.Context(), "doc", map[string]any{"n": 1}))
	st := f.get(t, "doc")
	st.Steps[0].Status = store.StepFailed
	st.Result["n"] = json.RawMessage(`2`)
	again := f.get(t, "doc")
	assert.Equal(t, store.StepPending, again.Steps[0].Status)
	assert.JSONEq(t, `1`, string(again.Result["n"]))
}

func TestLeaseMakesAbandonedTasksStale(t *testing.T) {
	f := newFixture(t, tracker.WithLease(time.Minute))
	ctx := t.Context()
	running(f.tr, "doc")
	st := f.get(t, "doc")
	assert.Equal(t, f.clock.Now().Add(time.Minute), st.LeaseUntil)
	assert.False(t, st.Stale(f.clock.Now()))

	f.clock.Advance(50 * time.Second)
	require.NoError(t, f.tr.Heartbeat(ctx, "doc"))
	f.clock.Advance(50 * time.Second)
	assert.False(t, f.get(t, "doc").Stale(f.clock.Now()), "a heartbeat renews the lease")

	f.clock.Advance(11 * time.Second)
	assert.True(t, f.get(t, "doc").Stale(f.clock.Now()), "no write for longer than the lease: the work was abandoned")

	require.NoError(t, f.tr.Succeed(ctx, "doc"))
	st = f.get(t, "doc")
	assert.True(t, st.LeaseUntil.IsZero(), "an ended task holds no lease")
	f.clock.Advance(time.Hour)
	assert.False(t, st.Stale(f.clock.Now()), "an ended task is never stale")
	require.ErrorIs(t, f.tr.Heartbeat(ctx, "doc"), store.ErrTerminal)
}

func TestNoLeaseByDefault(t *testing.T) {
	f := newFixture(t)
	running(f.tr, "doc")
	f.clock.Advance(23 * time.Hour)
	st := f.get(t, "doc")
	assert.True(t, st.LeaseUntil.IsZero())
	assert.False(t, st.Stale(f.clock.Now()))
}

func TestApplyIsOneAtomicWrite(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	running(f.tr, "doc")
	require.NoError(t, f.tr.StartStep(ctx, "doc", "a"))
	puts := f.store.puts.Load()
	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StepSucceeded("a"), tracker.StepStarted("b"),
		tracker.Progressed(store.Progress{Done: 1, Total: 2})))
	assert.Equal(t, puts+1, f.store.puts.Load(), "several changes are one write")
	st := f.get(t, "doc")
	a, _ := st.Step("a")
	b, _ := st.Step("b")
	assert.Equal(t, store.StepSuccess, a.Status)
	assert.Equal(t, store.StepRunning, b.Status)
	assert.Equal(t, int64(1), st.Progress.Done)

	before := f.get(t, "doc")
	err := f.tr.Apply(ctx, "doc", tracker.StepSucceeded("b"), tracker.StepStarted("a"))
	require.ErrorIs(t, err, store.ErrTerminal, "a refused change refuses them all")
	var te *tracker.Error
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "apply succeed step, start step", te.Op)
	assert.Contains(t, err.Error(), "start step: ", "the error names the refused change")
	assert.True(t, before.Equal(f.get(t, "doc")), "nothing of a refused Apply is written")
}

func TestApplyRefusesInvalidChanges(t *testing.T) {
	f := newFixture(t)
	running(f.tr, "doc")
	for name, changes := range map[string][]tracker.Change{
		"none":             nil,
		"zero":             {{}},
		"invalid progress": {tracker.StepStarted("a"), tracker.Progressed(store.Progress{Done: -1})},
	} {
		err := f.tr.Apply(t.Context(), "doc", changes...)
		require.ErrorIs(t, err, store.ErrInvalidInput, name)
	}
	a, _ := f.get(t, "doc").Step("a")
	assert.Equal(t, store.StepPending, a.Status, "nothing was applied")
}

func TestRetryTakesTheNewCorrelationID(t *testing.T) {
	f := newFixture(t)
	ctx := tracker.ContextWithCorrelationID(t.Context(), "first")
	require.NoError(t, f.tr.Create(ctx, "doc"))
	require.NoError(t, f.tr.Cancel(ctx, "doc", nil))
	require.NoError(t, f.tr.Retry(tracker.ContextWithCorrelationID(t.Context(), "second"), "doc"))
	assert.Equal(t, "second", f.get(t, "doc").CorrelationID, "a new attempt belongs to the request that asked for it")
	require.NoError(t, f.tr.Cancel(t.Context(), "doc", nil))
	require.NoError(t, f.tr.Retry(t.Context(), "doc"))
	assert.Equal(t, "second", f.get(t, "doc").CorrelationID, "without a new one, the id is kept")
}

// TestWritesNeverChangeAStateAlreadyRead checks that the tracker edits
// copies: memstore hands out the state it holds, shared with its readers.
func TestWritesNeverChangeAStateAlreadyRead(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	running(f.tr, "doc")
	require.NoError(t, f.tr.StartStep(ctx, "doc", "a"))
	read, err := f.store.Get(ctx, "doc")
	require.NoError(t, err)
	before := read.Clone()

	require.NoError(t, f.tr.Apply(ctx, "doc", tracker.StepSucceeded("a"), tracker.StepStarted("b"), tracker.StepStarted("c")))
	require.NoError(t, f.tr.Fail(ctx, "doc", errors.New("boom"), nil))
	require.True(t, before.Equal(read), "a write changed a state a reader holds:\nbefore %+v\nafter  %+v", before, read)
}

// TestRefusedCreateKeepsTheCache shows that a Create refused for its input
// leaves the state the Tracker keeps of a task it writes: the next
// transition still needs no read.
func TestRefusedCreateKeepsTheCache(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	require.NoError(t, f.tr.Create(ctx, "t1", "a", "b", "c"))
	require.ErrorIs(t, f.tr.Create(ctx, "t1", "x", "bad\x00name"), store.ErrInvalidInput)
	require.NoError(t, f.tr.Start(ctx, "t1"))
	assert.Zero(t, f.store.gets.Load(), "no read before the write")
	st, err := f.tr.Get(ctx, "t1")
	require.NoError(t, err)
	names := make([]string, len(st.Steps))
	for i, s := range st.Steps {
		names[i] = s.Name
	}
	assert.Equal(t, []string{"a", "b", "c"}, names, "the refused create changed nothing")
}
