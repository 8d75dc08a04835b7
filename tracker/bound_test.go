package tracker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type key struct{}

func TestBoundedContext(t *testing.T) {
	tr := &Tracker{timeout: 20 * time.Millisecond}
	parent := context.WithValue(context.Background(), key{}, "v")

	ctx := tr.bound(parent)
	defer ctx.stop()
	dl, ok := ctx.Deadline()
	require.True(t, ok)
	assert.WithinDuration(t, time.Now().Add(20*time.Millisecond), dl, 20*time.Millisecond)
	require.NoError(t, ctx.Err())
	assert.Equal(t, "v", ctx.Value(key{}))

	derived, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case <-derived.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close at the deadline")
	}
	require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	require.ErrorIs(t, derived.Err(), context.DeadlineExceeded)
	assert.Equal(t, "v", derived.Value(key{}))
}

func TestBoundedContextWithoutDone(t *testing.T) {
	tr := &Tracker{timeout: time.Nanosecond}
	ctx := tr.bound(context.Background())
	for !ctx.expired() { // a nanosecond passes
	}
	require.NoError(t, ctx.Err(), "without Done there is no timer and Err reports only the parent")
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done after the deadline must close at once")
	}
	require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	ctx.stop()
	require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded, "the first reason stays")

	stopped := tr.bound(context.Background())
	stopped.stop()
	require.ErrorIs(t, stopped.Err(), context.Canceled)
	select {
	case <-stopped.Done():
	default:
		t.Fatal("Done after stop must be closed")
	}
}

func TestBoundedContextParentCanceled(t *testing.T) {
	tr := &Tracker{timeout: time.Hour}
	parent, cancel := context.WithCancel(context.Background())
	ctx := tr.bound(parent)
	defer ctx.stop()
	done := ctx.Done()
	cancel()
	<-done
	require.ErrorIs(t, ctx.Err(), context.Canceled)

	parent2, cancel2 := context.WithCancel(context.Background())
	ctx2 := tr.bound(parent2)
	defer ctx2.stop()
	cancel2()
	require.ErrorIs(t, ctx2.Err(), context.Canceled, "Err sees the parent's end without a timer")
}

func TestBoundKeepsEarlierDeadline(t *testing.T) {
	tr := &Tracker{timeout: time.Hour}
	parent, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx := tr.bound(parent)
	defer ctx.stop()
	want, _ := parent.Deadline()
	got, _ := ctx.Deadline()
	assert.Equal(t, want, got, "a caller's earlier deadline is kept")
}
