package trackertest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
	"github.com/taskstatus/taskstatus/tracker/trackertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeTB records the first failure of a helper instead of failing the
// test, so that a test can check that the helper fails, and how.
type fakeTB struct {
	*testing.T // its Cleanup and Context
	failures   []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

// failure returns the one failure f recorded.
func (f *fakeTB) failure(t *testing.T) string {
	t.Helper()
	require.Len(t, f.failures, 1, "the helper fails once")
	return f.failures[0]
}

// failed ends a task "doc" with two steps, the second failed, and a result.
func failed(t *testing.T, h *trackertest.Harness) {
	ctx := t.Context()
	require.NoError(t, h.Tracker.Apply(ctx, "doc", tracker.Create("parse", "embed"),
		tracker.SetResult(map[string]any{"entities": 42})))
	run, err := h.Tracker.Start(ctx, "doc", tracker.StartStep("parse"))
	require.NoError(t, err)
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("parse"), tracker.StartStep("embed")))
	require.NoError(t, run.Apply(ctx, tracker.Fail(errors.New("embedding service down"),
		map[string]any{"exception_type": "ConnectionError", "retries": 3})))
}

func TestAssertionsPass(t *testing.T) {
	h := trackertest.New(t)
	failed(t, h)
	trackertest.RequireStatus(t, h.Store, "doc", store.StatusFailed)
	trackertest.RequireSteps(t, h.Store, "doc",
		store.Step{Name: "parse", Status: store.StepSuccess},
		store.Step{Name: "embed", Status: store.StepFailed, Error: "embedding service down"})
	trackertest.RequireResult(t, h.Store, "doc", map[string]any{"entities": 42})
	trackertest.RequireError(t, h.Store, "doc", "embedding service down", map[string]any{"exception_type": "ConnectionError"})
	trackertest.RequireNotFound(t, h.Store, "other")
}

// TestAssertionsFail shows each assertion failing, with a message that
// says what differs and shows the whole state.
func TestAssertionsFail(t *testing.T) {
	h := trackertest.New(t)
	failed(t, h)
	for _, tc := range []struct {
		name   string
		assert func(tb trackertest.TB)
		says   string
	}{
		{"status", func(tb trackertest.TB) { trackertest.RequireStatus(tb, h.Store, "doc", store.StatusSuccess) },
			`task "doc" is failed, want success`},
		{"unknown task", func(tb trackertest.TB) { trackertest.RequireStatus(tb, h.Store, "nope", store.StatusSuccess) },
			`task "nope": `},
		{"steps", func(tb trackertest.TB) {
			trackertest.RequireSteps(tb, h.Store, "doc", store.Step{Name: "parse", Status: store.StepSuccess},
				store.Step{Name: "embed", Status: store.StepSuccess})
		}, `task "doc" has steps [parse:success, embed:failed ("embedding service down")], want [parse:success, embed:success]`},
		{"step count", func(tb trackertest.TB) {
			trackertest.RequireSteps(tb, h.Store, "doc", store.Step{Name: "parse", Status: store.StepSuccess})
		}, `want [parse:success]`},
		{"step error", func(tb trackertest.TB) {
			trackertest.RequireSteps(tb, h.Store, "doc", store.Step{Name: "parse", Status: store.StepSuccess},
				store.Step{Name: "embed", Status: store.StepFailed, Error: "timeout"})
		}, `want [parse:success, embed:failed ("timeout")]`},
		{"result", func(tb trackertest.TB) {
			trackertest.RequireResult(tb, h.Store, "doc", map[string]any{"entities": 41})
		}, `task "doc" result: entities is 42, want 41`},
		{"missing result", func(tb trackertest.TB) {
			trackertest.RequireResult(tb, h.Store, "doc", map[string]any{"pages": 1})
		}, `pages is missing, want 1`},
		{"error message", func(tb trackertest.TB) { trackertest.RequireError(tb, h.Store, "doc", "boom", nil) },
			`task "doc" has error message "embedding service down", want "boom"`},
		{"error details", func(tb trackertest.TB) {
			trackertest.RequireError(tb, h.Store, "doc", "embedding service down", map[string]any{"retries": 2})
		}, `task "doc" error details: retries is 3, want 2`},
		{"found", func(tb trackertest.TB) { trackertest.RequireNotFound(tb, h.Store, "doc") },
			`task "doc" exists, want none`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeTB{T: t}
			tc.assert(fake)
			msg := fake.failure(t)
			assert.Contains(t, msg, tc.says)
			if tc.name != "unknown task" {
				assert.Contains(t, msg, `"status": "failed"`, "the message shows the whole state")
				assert.Contains(t, msg, `"name": "parse"`)
			}
		})
	}
}

func TestWaitForStatus(t *testing.T) {
	h := trackertest.New(t)
	ctx := t.Context()
	require.NoError(t, h.Tracker.Apply(ctx, "doc", tracker.Create("a")))
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		<-started
		run, err := h.Tracker.Start(context.Background(), "doc")
		if err == nil {
			err = run.Apply(context.Background(), tracker.Succeed())
		}
		done <- err
	}()
	close(started)
	st := trackertest.WaitForStatus(t, h.Store, "doc", store.StatusSuccess)
	assert.Equal(t, store.StatusSuccess, st.Status)
	require.NoError(t, <-done)

	// A task that ended otherwise fails the wait at once.
	require.NoError(t, h.Tracker.Apply(ctx, "canceled", tracker.Create(), tracker.Cancel(nil)))
	fake := &fakeTB{T: t}
	trackertest.WaitForStatus(fake, h.Store, "canceled", store.StatusSuccess)
	assert.Contains(t, fake.failure(t), `task "canceled" did not reach status [success]`)

	// So does a wait that outlasts the test's context.
	require.NoError(t, h.Tracker.Apply(ctx, "pending", tracker.Create()))
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	fake = &fakeTB{T: t}
	trackertest.WaitForStatus(withContext{fake, short}, h.Store, "pending", store.StatusSuccess)
	assert.Contains(t, fake.failure(t), "context deadline exceeded")
}

// withContext is a TB whose context is ctx.
type withContext struct {
	*fakeTB
	ctx context.Context
}

func (w withContext) Context() context.Context { return w.ctx }

func TestRun(t *testing.T) {
	h := trackertest.New(t)
	p, err := pipeline.New(
		pipeline.Step("parse", func(context.Context, *pipeline.Task) error { return nil }),
		pipeline.Step("embed", func(_ context.Context, task *pipeline.Task) error {
			task.SetResult(map[string]any{"vectors": 8})
			return nil
		}),
	)
	require.NoError(t, err)
	require.NoError(t, trackertest.Run(t, h.Tracker, p, "doc"))
	trackertest.RequireStatus(t, h.Store, "doc", store.StatusSuccess)
	trackertest.RequireResult(t, h.Store, "doc", map[string]any{"vectors": 8})
}

// TestAnyStore: the helpers work with redisstore on miniredis as with
// memstore.
func TestAnyStore(t *testing.T) {
	mr := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { client.Close() })
	s, err := redisstore.New(client)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	tr, err := tracker.New(s)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close(context.Background()) })
	failed(t, &trackertest.Harness{Tracker: tr, Store: s})
	trackertest.RequireStatus(t, s, "doc", store.StatusFailed)
	trackertest.WaitForStatus(t, s, "doc", store.StatusFailed)
	fake := &fakeTB{T: t}
	trackertest.RequireSteps(fake, s, "doc")
	assert.True(t, strings.HasPrefix(fake.failure(t), `trackertest: task "doc" has steps [parse:success`))
}
