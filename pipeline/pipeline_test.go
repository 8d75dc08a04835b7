package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
	"github.com/taskstatus/taskstatus/tracker"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)

// fixture is a tracker over a memstore, on a manual clock, that collects
// the errors it reports.
type fixture struct {
	tr    *tracker.Tracker
	clock *storetest.Clock

	mu     sync.Mutex
	errors []error
}

// newFixture returns a fixture whose store is the memstore, or what wrap
// makes of it.
func newFixture(t testing.TB, wrap ...func(store.Store) store.Store) *fixture {
	t.Helper()
	clock := storetest.NewClock(t0)
	mem, err := memstore.New(memstore.WithClock(clock.Now))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	var s store.Store = mem
	for _, w := range wrap {
		s = w(s)
	}
	f := &fixture{clock: clock}
	f.tr, err = tracker.New(s,
		tracker.WithClock(clock.Now),
		tracker.WithErrorHandler(func(_ context.Context, err error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.errors = append(f.errors, err)
		}))
	require.NoError(t, err)
	return f
}

// reported returns the errors the tracker reported so far.
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

// statuses returns the status of each step of st, by name.
func statuses(st store.State) map[string]store.StepStatus {
	m := make(map[string]store.StepStatus, len(st.Steps))
	for _, s := range st.Steps {
		m[s.Name] = s.Status
	}
	return m
}

// step returns the recorded step named name.
func step(t *testing.T, st store.State, name string) store.Step {
	t.Helper()
	s, ok := st.Step(name)
	require.True(t, ok, "step %q is recorded", name)
	return s
}

func newPipeline(t testing.TB, opts ...pipeline.Option) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.New(opts...)
	require.NoError(t, err)
	return p
}

// ok is a step that succeeds.
func ok(context.Context, *pipeline.Task) error { return nil }

// fail returns a step that fails with err.
func fail(err error) pipeline.Func {
	return func(context.Context, *pipeline.Task) error { return err }
}

// notRun is a step that fails the test if it runs.
func notRun(t *testing.T) pipeline.Func {
	return func(context.Context, *pipeline.Task) error {
		t.Error("a step that must not run was run")
		return nil
	}
}

func TestNewRejectsInvalidDeclarations(t *testing.T) {
	long := strings.Repeat("s", tracker.MaxStepNameLen+1)
	many := make([]pipeline.Option, tracker.MaxSteps+1)
	for i := range many {
		many[i] = pipeline.Step("s"+strings.Repeat("x", i%100)+string(rune('a'+i/100)), ok)
	}
	for _, tc := range []struct {
		name string
		opts []pipeline.Option
		want string
	}{
		{"NoSteps", nil, "no steps"},
		{"EmptyName", []pipeline.Option{pipeline.Step("", ok)}, "without a name"},
		{"LongName", []pipeline.Option{pipeline.Step(long, ok)}, "step name of"},
		{"NilFunc", []pipeline.Option{pipeline.Step("a", nil)}, "nil function"},
		{"Duplicate", []pipeline.Option{pipeline.Step("a", ok), pipeline.Step("a", ok)}, "declared twice"},
		{"DuplicateInGroup", []pipeline.Option{pipeline.Group(pipeline.Step("a", ok), pipeline.Step("a", ok))}, "declared twice"},
		{"UnknownDependency", []pipeline.Option{pipeline.Step("a", ok, pipeline.DependsOn("b"))}, "not a step of an earlier stage"},
		{"LaterDependency", []pipeline.Option{pipeline.Step("a", ok, pipeline.DependsOn("b")), pipeline.Step("b", ok)}, "not a step of an earlier stage"},
		{"SelfDependency", []pipeline.Option{pipeline.Step("a", ok, pipeline.DependsOn("a"))}, "not a step of an earlier stage"},
		{"DependencyInSameGroup", []pipeline.Option{pipeline.Group(
			pipeline.Step("a", ok), pipeline.Step("b", ok, pipeline.DependsOn("a")))}, "not a step of an earlier stage"},
		{"EmptyGroup", []pipeline.Option{pipeline.Group()}, "empty stage"},
		{"ZeroStage", []pipeline.Option{pipeline.Stage{}}, "empty stage"},
		{"InvalidOptionInGroup", []pipeline.Option{pipeline.Group(pipeline.Step("a", ok, pipeline.Timeout(0)))}, "Timeout(0s)"},
		{"ZeroAttempts", []pipeline.Option{pipeline.Step("a", ok, pipeline.Retry(0, 0, 0))}, "fewer than 1 attempt"},
		{"NegativeBackoff", []pipeline.Option{pipeline.Step("a", ok, pipeline.Retry(2, -1, 0))}, "0 <= initial <= maxWait"},
		{"MaxBelowInitial", []pipeline.Option{pipeline.Step("a", ok, pipeline.Retry(2, time.Second, time.Millisecond))}, "0 <= initial <= maxWait"},
		{"NegativeTimeout", []pipeline.Option{pipeline.Step("a", ok, pipeline.Timeout(-time.Second))}, "not positive"},
		{"NilSleep", []pipeline.Option{pipeline.Step("a", ok), pipeline.WithSleep(nil)}, "nil function"},
		{"NilOption", []pipeline.Option{pipeline.Step("a", ok), nil}, "nil option"},
		{"NilStepOption", []pipeline.Option{pipeline.Step("a", ok, nil)}, `step "a": nil option`},
		{"TooManySteps", many, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := pipeline.New(tc.opts...)
			require.ErrorContains(t, err, tc.want)
			assert.Nil(t, p)
		})
	}
}

func TestStepsIsThePlan(t *testing.T) {
	p := newPipeline(t,
		pipeline.Step("a", ok),
		pipeline.Group(pipeline.Step("b", ok), pipeline.Group(pipeline.Step("c", ok), pipeline.Step("d", ok))),
		pipeline.Step("e", ok, pipeline.DependsOn("a", "c")),
	)
	steps := p.Steps()
	assert.Equal(t, []string{"a", "b", "c", "d", "e"}, steps)
	steps[0] = "changed"
	assert.Equal(t, "a", p.Steps()[0], "Steps returns a copy")
}

func TestRunRecordsPlanStepsAndTiming(t *testing.T) {
	f := newFixture(t)
	ctx := tracker.ContextWithCorrelationID(t.Context(), "abc-456-def")
	const id = "doc-123"
	var seen store.State
	p := newPipeline(t,
		pipeline.Step("extract", func(ctx context.Context, task *pipeline.Task) error {
			seen = f.get(t, task.ID())
			f.clock.Advance(time.Second)
			task.Progress(1, 3, "extracted")
			task.SetResult(map[string]any{"entities_extracted": 42})
			return nil
		}),
		pipeline.Step("embed", func(context.Context, *pipeline.Task) error {
			f.clock.Advance(2 * time.Second)
			return nil
		}),
		pipeline.Step("index", func(_ context.Context, task *pipeline.Task) error {
			f.clock.Advance(3 * time.Second)
			task.SetResult(map[string]any{"vector_indexed": true})
			task.Detail("dropped", "a succeeding step's details are not recorded")
			return nil
		}),
	)

	require.NoError(t, p.Run(ctx, f.tr, id))

	assert.Equal(t, store.StatusRunning, seen.Status, "the task runs while its first step does")
	assert.Equal(t, map[string]store.StepStatus{"extract": store.StepRunning, "embed": store.StepPending, "index": store.StepPending},
		statuses(seen), "every step is recorded when the run starts")
	assert.Equal(t, []string{"extract", "embed", "index"}, []string{seen.Steps[0].Name, seen.Steps[1].Name, seen.Steps[2].Name},
		"steps are recorded in order")

	st := f.get(t, id)
	assert.Equal(t, store.StatusSuccess, st.Status)
	assert.Equal(t, "abc-456-def", st.CorrelationID)
	assert.Equal(t, t0, st.StartedAt)
	assert.Equal(t, t0.Add(6*time.Second), st.CompletedAt)
	assert.Empty(t, st.ErrorMessage)
	assert.Empty(t, st.ErrorDetails)
	assert.Equal(t, store.Progress{Done: 1, Total: 3, Message: "extracted"}, st.Progress)
	assert.JSONEq(t, `42`, string(st.Result["entities_extracted"]))
	assert.JSONEq(t, `true`, string(st.Result["vector_indexed"]))
	starts := []time.Duration{0, time.Second, 3 * time.Second}
	ends := []time.Duration{time.Second, 3 * time.Second, 6 * time.Second}
	for i, s := range st.Steps {
		assert.Equal(t, store.StepSuccess, s.Status, s.Name)
		assert.Equal(t, t0.Add(starts[i]), s.StartedAt, "%s started", s.Name)
		assert.Equal(t, t0.Add(ends[i]), s.CompletedAt, "%s ended", s.Name)
		assert.Equal(t, 1, s.Attempt, s.Name)
		assert.Empty(t, s.Error, s.Name)
	}
	assert.Empty(t, f.reported(), "a clean run reports no tracking error")
}

func TestRunStartsOnlyAPendingTask(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(tr *tracker.Tracker, id string) error
		want  error // nil: the run goes ahead
	}{
		{"Unknown", func(*tracker.Tracker, string) error { return nil }, nil},
		{"Pending", func(tr *tracker.Tracker, id string) error { return tr.Create(ctx, id, "a", "b") }, nil},
		{"PendingWithOtherPlan", func(tr *tracker.Tracker, id string) error { return tr.Create(ctx, id, "b", "x") }, nil},
		{"Running", func(tr *tracker.Tracker, id string) error {
			if err := tr.Create(ctx, id); err != nil {
				return err
			}
			return tr.Start(ctx, id)
		}, store.ErrInvalidTransition},
		{"Ended", func(tr *tracker.Tracker, id string) error {
			if err := tr.Create(ctx, id); err != nil {
				return err
			}
			return tr.Cancel(ctx, id, nil)
		}, store.ErrTerminal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			require.NoError(t, tc.setup(f.tr, "doc"))
			before, _ := f.tr.Get(ctx, "doc")
			ran := false
			p := newPipeline(t, pipeline.Step("a", func(context.Context, *pipeline.Task) error {
				ran = true
				return nil
			}), pipeline.Step("b", ok))

			err := p.Run(ctx, f.tr, "doc")

			assert.Empty(t, f.reported(), "finding the task in any state is no tracking error")
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				assert.False(t, ran, "a task that has started is not run again")
				assert.True(t, before.Equal(f.get(t, "doc")), "a refused run leaves the task as it was")
				return
			}
			require.NoError(t, err)
			assert.True(t, ran)
			st := f.get(t, "doc")
			assert.Equal(t, store.StatusSuccess, st.Status)
			assert.Equal(t, store.StepSuccess, step(t, st, "a").Status)
			assert.Equal(t, store.StepSuccess, step(t, st, "b").Status)
		})
	}
}

func TestRunLosesTheRaceToStart(t *testing.T) {
	var other *tracker.Tracker
	f := newFixture(t, func(s store.Store) store.Store {
		var err error
		other, err = tracker.New(s) // another process, writing the same store
		require.NoError(t, err)
		return &afterGet{Store: s, hook: func() { require.NoError(t, other.Start(context.Background(), "doc")) }}
	})
	require.NoError(t, f.tr.Create(t.Context(), "doc"))
	p := newPipeline(t, pipeline.Step("a", notRun(t)))

	err := p.Run(t.Context(), f.tr, "doc")
	require.ErrorIs(t, err, store.ErrInvalidTransition, "the task was started by another between the read and the start")
	assert.Len(t, f.reported(), 1, "the tracker reports the refused start")
}

// afterGet runs hook after its first Get.
type afterGet struct {
	store.Store
	once sync.Once
	hook func()
}

func (s *afterGet) Get(ctx context.Context, id string) (store.State, error) {
	st, err := s.Store.Get(ctx, id)
	s.once.Do(s.hook)
	return st, err
}

func TestRunRejectsInvalidArguments(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t, pipeline.Step("a", notRun(t)))
	require.ErrorIs(t, p.Run(t.Context(), f.tr, "a{b}"), store.ErrInvalidID)
	require.ErrorContains(t, p.Run(t.Context(), nil, "doc"), "nil tracker")
}

func TestStoreDownDoesNotFailTheWork(t *testing.T) {
	f := newFixture(t, func(s store.Store) store.Store { return downStore{s} })
	ran := 0
	count := func(_ context.Context, task *pipeline.Task) error {
		ran++
		task.Progress(int64(ran), 3, "")
		task.SetResult(map[string]any{"n": ran})
		return nil
	}
	p := newPipeline(t, pipeline.Step("a", count), pipeline.Step("b", count), pipeline.Step("c", count))

	require.NoError(t, p.Run(t.Context(), f.tr, "doc"), "the work succeeded, whatever the store did")
	assert.Equal(t, 3, ran, "every step ran")

	reported := f.reported()
	require.NotEmpty(t, reported, "the outage is reported to the error handler")
	for i, err := range reported {
		require.ErrorIs(t, err, store.ErrUnavailable)
		var te *tracker.Error
		require.ErrorAs(t, err, &te, "errors are reported by the tracker, not by the pipeline")
		for _, other := range reported[:i] {
			require.NotSame(t, other, err, "each error is reported once")
		}
	}

	broken := errors.New("broken")
	p = newPipeline(t, pipeline.Step("a", fail(broken)))
	err := p.Run(t.Context(), f.tr, "doc")
	require.ErrorIs(t, err, broken, "a failing step still fails the run")
}

// downStore is a store that cannot be reached.
type downStore struct{ store.Store }

var errDown = errors.Join(store.ErrUnavailable, errors.New("connection refused"))

func (downStore) Get(context.Context, string) (store.State, error) { return store.State{}, errDown }

func (downStore) Put(context.Context, store.State, time.Duration) error { return errDown }
