package tracker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/tracker"
)

// observed collects the events an Observer is told of.
type observed struct {
	mu     sync.Mutex
	events []tracker.Event
}

func (o *observed) observe(_ context.Context, e tracker.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

func (o *observed) take() []tracker.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	events := o.events
	o.events = nil
	return events
}

// transition is what a test checks of a write's Event.
func transition(e tracker.Event) string {
	if e.Err != nil {
		return fmt.Sprintf("%s %s: error", e.ID, e.Op)
	}
	return fmt.Sprintf("%s %s: v%d %s -> v%d %s", e.ID, e.Op, e.Prev.Version, e.Prev.Status, e.Next.Version, e.Next.Status)
}

// TestObserver: each write, by id or through a Run, is one Event with the
// states before and after it, its changes and its timing; a refused call
// is an Event with the error the error handler is told of.
func TestObserver(t *testing.T) {
	var o observed
	f := newFixture(t, tracker.WithObserver(o.observe))
	ctx := t.Context()

	f.create(t, "doc", "a", "b")
	run, err := f.tr.Start(ctx, "doc", tracker.StartStep("a"))
	require.NoError(t, err)
	require.NoError(t, run.Apply(ctx, tracker.SucceedStep("a"), tracker.StartStep("b")))
	require.ErrorIs(t, run.Apply(ctx, tracker.StartStep("b")), store.ErrInvalidTransition)
	require.NoError(t, run.Apply(ctx, tracker.FailStep("b", errors.New("boom")), tracker.Fail(errors.New("boom"), nil)))

	events := o.take()
	var got []string
	for _, e := range events {
		got = append(got, transition(e))
	}
	assert.Equal(t, []string{
		"doc create: v0  -> v1 pending",
		"doc apply start, start step: v1 pending -> v2 running",
		"doc apply succeed step, start step: v2 running -> v3 running",
		"doc start step: error",
		"doc apply fail step, fail: v3 running -> v4 failed",
	}, got)

	refused := events[3]
	require.Len(t, f.reported(), 1)
	assert.Same(t, f.reported()[0], refused.Err, "the error the error handler is told of")
	assert.Zero(t, refused.Prev)
	assert.Zero(t, refused.Next)

	for i, e := range events {
		if e.Err != nil {
			continue
		}
		assert.Positive(t, e.Took, "event %d is timed", i)
		assert.Equal(t, i == len(events)-1, e.Ended(), "event %d: only the last write ends the task", i)
	}
	step, _ := events[2].Prev.Step("a")
	assert.Equal(t, store.StepRunning, step.Status, "Prev is the state before the write")
	step, _ = events[2].Next.Step("a")
	assert.Equal(t, store.StepSuccess, step.Status, "Next is the state written")
	assert.Equal(t, f.get(t, "doc"), events[4].Next, "Next is the state stored")
}

// TestObserverStoreDown: a Run's change the store did not take is an
// Event with its error; once the store answers, the background write
// that takes it is an Event too.
func TestObserverStoreDown(t *testing.T) {
	var o observed
	f := newFixture(t)
	s := &faultyStore{Store: f.mem}
	tr := f.tracker(t, s, tracker.WithObserver(o.observe))
	ctx := t.Context()
	require.NoError(t, tr.Apply(ctx, "doc", tracker.Create("a")))
	run, err := tr.Start(ctx, "doc")
	require.NoError(t, err)
	o.take()

	s.set(func(string, store.Write) fault { return down })
	require.ErrorIs(t, run.Apply(ctx, tracker.Succeed()), store.ErrUnavailable)
	events := o.take()
	require.Len(t, events, 1)
	require.ErrorIs(t, events[0].Err, store.ErrUnavailable)
	assert.Equal(t, "doc succeed: error", transition(events[0]))

	s.set(nil)
	require.NoError(t, tr.Close(ctx)) // writes what waits
	events = o.take()
	require.Len(t, events, 1)
	assert.Equal(t, "doc succeed: v2 running -> v3 success", transition(events[0]))
	assert.True(t, events[0].Ended())
}

// TestObserversInOrder: several observers are each told of every event,
// in the order they were added, and WithOnEnd is one of them.
func TestObserversInOrder(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	note := func(name string) tracker.Observer {
		return func(_ context.Context, e tracker.Event) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, name+" "+e.Op)
		}
	}
	onEnd := tracker.WithOnEnd(func(_ context.Context, st store.State) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, "end "+string(st.Status))
	})
	f := newFixture(t, tracker.WithObserver(note("first")), onEnd, tracker.WithObserver(note("second")))
	f.create(t, "doc")
	require.NoError(t, f.tr.Apply(t.Context(), "doc", tracker.Cancel(nil)))

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"first create", "second create", "first cancel", "end canceled", "second cancel"}, calls)
}

func TestObserverOption(t *testing.T) {
	f := newFixture(t)
	_, err := tracker.New(f.mem, tracker.WithObserver(nil))
	require.ErrorContains(t, err, "WithObserver")
}
