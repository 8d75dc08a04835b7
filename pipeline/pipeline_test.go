package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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
	store store.Store // what tr writes: the memstore, or what wrap made of it
	clock *storetest.Clock

	mu     sync.Mutex
	errors []error
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith returns a fixture whose store is what wrap makes of the
// memstore (if wrap is not nil), and whose tracker has opts too.
func newFixtureWith(t testing.TB, wrap func(store.Store) store.Store, opts ...tracker.Option) *fixture {
	t.Helper()
	clock := storetest.NewClock(t0)
	mem, err := memstore.New(memstore.WithClock(clock.Now))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, mem.Close()) })
	f := &fixture{clock: clock, store: mem}
	if wrap != nil {
		f.store = wrap(mem)
	}
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
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, f.tr.Close(ctx), "the tracker writes what it kept")
	})
	return f
}

// reported returns the errors the tracker reported so far.
func (f *fixture) reported() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errors...)
}

// create records task id as pending with the plan of p, as a service does
// before it runs p.
func (f *fixture) create(t testing.TB, p *pipeline.Pipeline, id string) {
	t.Helper()
	require.NoError(t, f.tr.Apply(context.Background(), id, tracker.Create(p.Steps()...)))
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

func newPipeline(t testing.TB, stages ...pipeline.Stage) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.New(stages...)
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

// puts is a store that counts its writes, and calls hook, if set, after
// each write that succeeded.
type puts struct {
	store.Store
	n    atomic.Int64
	hook func(store.Write)
}

func (s *puts) Put(ctx context.Context, w store.Write) error {
	s.n.Add(1)
	err := s.Store.Put(ctx, w)
	if err == nil && s.hook != nil {
		s.hook(w)
	}
	return err
}

// logs captures what is logged with slog.Default until the test ends.
type logs struct {
	mu      sync.Mutex
	records []slog.Record
}

func captureLogs(t *testing.T) *logs {
	l := &logs{}
	old := slog.Default()
	slog.SetDefault(slog.New(l))
	t.Cleanup(func() { slog.SetDefault(old) })
	return l
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }

func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

// attrs returns the attributes of each record logged, by key, with the
// message under "msg".
func (l *logs) attrs() []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var all []map[string]string
	for _, r := range l.records {
		m := map[string]string{"msg": r.Message}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		all = append(all, m)
	}
	return all
}

func TestNewRejectsInvalidDeclarations(t *testing.T) {
	long := strings.Repeat("s", tracker.MaxStepNameLen+1)
	many := make([]pipeline.Stage, tracker.MaxSteps+1)
	for i := range many {
		many[i] = pipeline.Step("s"+strings.Repeat("x", i%100)+string(rune('a'+i/100)), ok)
	}
	for _, tc := range []struct {
		name   string
		stages []pipeline.Stage
		want   string
	}{
		{"NoSteps", nil, "no steps"},
		{"EmptyName", []pipeline.Stage{pipeline.Step("", ok)}, "without a name"},
		{"LongName", []pipeline.Stage{pipeline.Step(long, ok)}, "step name of"},
		{"NilFunc", []pipeline.Stage{pipeline.Step("a", nil)}, "nil function"},
		{"Duplicate", []pipeline.Stage{pipeline.Step("a", ok), pipeline.Step("a", ok)}, "declared twice"},
		{"DuplicateInGroup", []pipeline.Stage{pipeline.Group(pipeline.Step("a", ok), pipeline.Step("a", ok))}, "declared twice"},
		{"UnknownDependency", []pipeline.Stage{pipeline.Step("a", ok, pipeline.DependsOn("b"))}, "not a step of an earlier stage"},
		{"LaterDependency", []pipeline.Stage{pipeline.Step("a", ok, pipeline.DependsOn("b")), pipeline.Step("b", ok)}, "not a step of an earlier stage"},
		{"SelfDependency", []pipeline.Stage{pipeline.Step("a", ok, pipeline.DependsOn("a"))}, "not a step of an earlier stage"},
		{"DependencyInSameGroup", []pipeline.Stage{pipeline.Group(
			pipeline.Step("a", ok), pipeline.Step("b", ok, pipeline.DependsOn("a")))}, "not a step of an earlier stage"},
		{"EmptyGroup", []pipeline.Stage{pipeline.Group()}, "empty stage"},
		{"ZeroStage", []pipeline.Stage{pipeline.Step("a", ok), {}}, "empty stage"},
		{"InvalidOptionInGroup", []pipeline.Stage{pipeline.Group(pipeline.Step("a", ok, pipeline.Timeout(0)))}, "Timeout(0s)"},
		{"ZeroAttempts", []pipeline.Stage{pipeline.Step("a", ok, pipeline.Retry(0, 0, 0))}, "fewer than 1 attempt"},
		{"NegativeBackoff", []pipeline.Stage{pipeline.Step("a", ok, pipeline.Retry(2, -1, 0))}, "0 <= initial <= maxWait"},
		{"MaxBelowInitial", []pipeline.Stage{pipeline.Step("a", ok, pipeline.Retry(2, time.Second, time.Millisecond))}, "0 <= initial <= maxWait"},
		{"NegativeTimeout", []pipeline.Stage{pipeline.Step("a", ok, pipeline.Timeout(-time.Second))}, "not positive"},
		{"NilStepOption", []pipeline.Stage{pipeline.Step("a", ok, nil)}, `step "a": nil option`},
		{"TooManySteps", many, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := pipeline.New(tc.stages...)
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

func TestRunRecordsStepsAndTiming(t *testing.T) {
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
	require.NoError(t, f.tr.Apply(ctx, id, tracker.Create(p.Steps()...)))

	require.NoError(t, p.Run(ctx, f.tr, id))

	assert.Equal(t, store.StatusRunning, seen.Status, "the task runs while its first step does")
	assert.Equal(t, map[string]store.StepStatus{"extract": store.StepRunning, "embed": store.StepPending, "index": store.StepPending},
		statuses(seen), "the plan is recorded when the run starts")
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
		{"Pending", func(tr *tracker.Tracker, id string) error { return tr.Apply(ctx, id, tracker.Create("a", "b")) }, nil},
		{"PendingWithOtherPlan", func(tr *tracker.Tracker, id string) error { return tr.Apply(ctx, id, tracker.Create("b", "x")) }, nil},
		{"Unknown", func(*tracker.Tracker, string) error { return nil }, store.ErrNotFound},
		{"Running", func(tr *tracker.Tracker, id string) error {
			if err := tr.Apply(ctx, id, tracker.Create()); err != nil {
				return err
			}
			_, err := tr.Start(ctx, id)
			return err
		}, store.ErrInvalidTransition},
		{"Ended", func(tr *tracker.Tracker, id string) error {
			if err := tr.Apply(ctx, id, tracker.Create()); err != nil {
				return err
			}
			return tr.Apply(ctx, id, tracker.Cancel(nil))
		}, store.ErrTerminal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged := captureLogs(t)
			f := newFixture(t)
			require.NoError(t, tc.setup(f.tr, "doc"))
			before, _ := f.tr.Get(ctx, "doc")
			ran := false
			p := newPipeline(t, pipeline.Step("a", func(context.Context, *pipeline.Task) error {
				ran = true
				return nil
			}), pipeline.Step("b", ok))

			err := p.Run(ctx, f.tr, "doc")

			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				assert.False(t, ran, "a task that is not pending is not run")
				after, _ := f.tr.Get(ctx, "doc")
				assert.True(t, before.Equal(after), "a refused run leaves the task as it was")
				require.Len(t, f.reported(), 1, "the tracker reports the refused start")
				require.ErrorIs(t, f.reported()[0], tc.want)
				assert.Empty(t, logged.attrs(), "the pipeline does not report it again")
				return
			}
			require.NoError(t, err)
			assert.True(t, ran)
			st := f.get(t, "doc")
			assert.Equal(t, store.StatusSuccess, st.Status)
			assert.Equal(t, store.StepSuccess, step(t, st, "a").Status)
			assert.Equal(t, store.StepSuccess, step(t, st, "b").Status)
			assert.Empty(t, f.reported())
		})
	}
}

func TestRunLosesTheRaceToStart(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t, pipeline.Step("a", notRun(t)))
	f.create(t, p, "doc")
	other, err := tracker.New(f.store) // another process, writing the same store
	require.NoError(t, err)
	_, err = other.Start(t.Context(), "doc")
	require.NoError(t, err)

	err = p.Run(t.Context(), f.tr, "doc")
	require.ErrorIs(t, err, store.ErrInvalidTransition, "the task was started by another after this tracker created it")
	assert.Len(t, f.reported(), 1, "the tracker reports the refused start")
}

func TestRunRejectsInvalidArguments(t *testing.T) {
	f := newFixture(t)
	p := newPipeline(t, pipeline.Step("a", notRun(t)))
	require.ErrorIs(t, p.Run(t.Context(), f.tr, "a{b}"), store.ErrInvalidID, "the tracker checks the id")
	require.ErrorContains(t, p.Run(t.Context(), nil, "doc"), "nil tracker")
}

// TestWritesPerRun counts the writes of runs of steps run alone: the end
// of a step is written with the start of the next, or with the end of the
// task.
func TestWritesPerRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		failAt int // the step that fails, from 0, or -1
		want   int64
	}{
		{"Success", -1, 6}, // the start with the first step's, 4 step ends with the next's start, the end
		{"FailureAtThirdStep", 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			counter := &puts{}
			f := newFixtureWith(t, func(s store.Store) store.Store { counter.Store = s; return counter })
			stages := make([]pipeline.Stage, 5)
			for i := range stages {
				fn := ok
				if i == tc.failAt {
					fn = fail(errors.New("broken"))
				}
				stages[i] = pipeline.Step(string(rune('a'+i)), fn)
			}
			p := newPipeline(t, stages...)
			f.create(t, p, "doc")
			counter.n.Store(0)

			_ = p.Run(t.Context(), f.tr, "doc")

			assert.Equal(t, tc.want, counter.n.Load())
			assert.Empty(t, f.reported(), "no write conflicted or failed")
		})
	}
}

func TestHeartbeatRenewsTheLease(t *testing.T) {
	f := newFixtureWith(t, nil, tracker.WithLease(30*time.Second))
	var before, after store.State
	p := newPipeline(t, pipeline.Step("long", func(_ context.Context, task *pipeline.Task) error {
		before = f.get(t, task.ID())
		f.clock.Advance(20 * time.Second)
		task.Heartbeat()
		after = f.get(t, task.ID())
		return nil
	}))
	f.create(t, p, "doc")

	require.NoError(t, p.Run(t.Context(), f.tr, "doc"))
	assert.Equal(t, t0.Add(30*time.Second), before.LeaseUntil)
	assert.Equal(t, t0.Add(50*time.Second), after.LeaseUntil, "the heartbeat renews the lease from its time")
	assert.Equal(t, before.UpdatedAt, after.UpdatedAt, "a heartbeat changes nothing a client reads")
	assert.Equal(t, before.Version+1, after.Version)
	assert.Empty(t, f.reported())
}
