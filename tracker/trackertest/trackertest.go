// Package trackertest helps a service test its use of taskstatus: a
// [tracker.Tracker] over an in-memory store on a clock the test moves,
// assertions on a task's recorded state that read like the domain, a wait
// for a status that follows the store's watch, and a pipeline run in the
// test's goroutine.
//
// The assertions take any [store.Store], so a test backed by redisstore on
// miniredis (see the redisstore package's examples) uses them too. Each
// fails the test with a message that shows the whole recorded state.
//
//	func TestSubmit(t *testing.T) {
//		h := trackertest.New(t)
//		svc := newService(h.Tracker) // the service under test
//		svc.Submit(t.Context(), "doc-1")
//		trackertest.WaitForStatus(t, h.Store, "doc-1", store.StatusSuccess)
//		trackertest.RequireSteps(t, h.Store, "doc-1",
//			store.Step{Name: "parse", Status: store.StepSuccess},
//			store.Step{Name: "embed", Status: store.StepSuccess})
//	}
package trackertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/pipeline"
	"github.com/taskstatus/taskstatus/store"
	"github.com/taskstatus/taskstatus/store/storetest"
	"github.com/taskstatus/taskstatus/tracker"
)

// TB is the part of [testing.TB] the helpers use: a *testing.T or
// *testing.B is one.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(f func())
	Context() context.Context
}

// DefaultWait bounds WaitForStatus when the test's context has no
// deadline.
const DefaultWait = 10 * time.Second

// Harness is a Tracker over a store, on a clock that moves only when the
// test moves it, as [New] makes it.
type Harness struct {
	Tracker *tracker.Tracker
	Store   store.Store
	Clock   *storetest.Clock // stamps the Tracker's times and the memstore's expiry
}

// New returns a Harness over a new memstore, whose Tracker and store read
// Clock, which starts at 2025-11-12T10:00:00Z. The Tracker gets opts
// after its clock; it and the store are closed when the test ends.
func New(t TB, opts ...tracker.Option) *Harness {
	t.Helper()
	clock := storetest.NewClock(time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC))
	mem, err := memstore.New(memstore.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("trackertest: memstore: %v", err)
		return nil
	}
	t.Cleanup(func() { _ = mem.Close() })
	tr, err := tracker.New(mem, append([]tracker.Option{tracker.WithClock(clock.Now)}, opts...)...)
	if err != nil {
		t.Fatalf("trackertest: tracker: %v", err)
		return nil
	}
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return &Harness{Tracker: tr, Store: mem, Clock: clock}
}

// Run runs p for task id in the calling goroutine, as a worker would: it
// creates the task with p's steps if it does not exist, then runs the
// pipeline through tr and returns its result (see [pipeline.Pipeline.Run]).
func Run(t TB, tr *tracker.Tracker, p *pipeline.Pipeline, id string) error {
	t.Helper()
	err := tr.Apply(t.Context(), id, tracker.Create(p.Steps()...))
	if err != nil && !errors.Is(err, store.ErrExists) {
		t.Fatalf("trackertest: create task %q: %v", id, err)
		return err
	}
	return p.Run(t.Context(), tr, id)
}

// get returns the recorded state of task id in s, or fails the test and
// reports false if there is none.
func get(t TB, s store.Store, id string) (store.State, bool) {
	t.Helper()
	st, err := s.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("trackertest: task %q: %v", id, err)
		return store.State{}, false
	}
	return st, true
}

// RequireStatus fails the test unless task id in s has status want.
func RequireStatus(t TB, s store.Store, id string, want store.Status) {
	t.Helper()
	if st, ok := get(t, s, id); ok && st.Status != want {
		t.Fatalf("trackertest: task %q is %s, want %s\n%s", id, st.Status, want, show(st))
	}
}

// RequireNotFound fails the test if s holds task id.
func RequireNotFound(t TB, s store.Store, id string) {
	t.Helper()
	st, err := s.Get(t.Context(), id)
	switch {
	case err == nil:
		t.Fatalf("trackertest: task %q exists, want none\n%s", id, show(st))
	case !errors.Is(err, store.ErrNotFound):
		t.Fatalf("trackertest: task %q: %v", id, err)
	}
}

// RequireSteps fails the test unless task id in s has exactly the steps
// want, in order, each with the name and status given, and the error given
// if it is not empty.
func RequireSteps(t TB, s store.Store, id string, want ...store.Step) {
	t.Helper()
	st, ok := get(t, s, id)
	if !ok {
		return
	}
	match := len(st.Steps) == len(want)
	for i := 0; match && i < len(want); i++ {
		got, w := st.Steps[i], want[i]
		match = got.Name == w.Name && got.Status == w.Status && (w.Error == "" || got.Error == w.Error)
	}
	if !match {
		t.Fatalf("trackertest: task %q has steps %s, want %s\n%s", id, steps(st.Steps), steps(want), show(st))
	}
}

// RequireResult fails the test unless each field of want is a result
// field of task id in s, equal to it once encoded as JSON. Other result
// fields are not checked.
func RequireResult(t TB, s store.Store, id string, want map[string]any) {
	t.Helper()
	st, ok := get(t, s, id)
	if !ok {
		return
	}
	if diff := fieldsDiff(st.Result, want); diff != "" {
		t.Fatalf("trackertest: task %q result: %s\n%s", id, diff, show(st))
	}
}

// RequireError fails the test unless task id in s records the error
// message msg and each field of details in its error details, equal once
// encoded as JSON; other details are not checked.
func RequireError(t TB, s store.Store, id, msg string, details map[string]any) {
	t.Helper()
	st, ok := get(t, s, id)
	if !ok {
		return
	}
	if st.ErrorMessage != msg {
		t.Fatalf("trackertest: task %q has error message %q, want %q\n%s", id, st.ErrorMessage, msg, show(st))
		return
	}
	if diff := fieldsDiff(st.ErrorDetails, details); diff != "" {
		t.Fatalf("trackertest: task %q error details: %s\n%s", id, diff, show(st))
	}
}

// WaitForStatus waits until task id in s has one of the statuses want,
// and returns its state. It follows the task with the store's
// [store.Watcher], so that it returns as soon as the status is written;
// s must be one. It fails the test if the task does not exist, or has
// ended in another status, or if the test's context ends first, or
// [DefaultWait] passes when the context has no deadline.
func WaitForStatus(t TB, s store.Store, id string, want ...store.Status) store.State {
	t.Helper()
	w, ok := s.(store.Watcher)
	if !ok {
		t.Fatalf("trackertest: WaitForStatus: the store (%T) cannot watch", s)
		return store.State{}
	}
	ctx := t.Context()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWait)
		defer cancel()
	}
	var last store.State
	for ctx.Err() == nil {
		ch, err := w.Watch(ctx, id)
		if err != nil {
			t.Fatalf("trackertest: watch task %q: %v", id, err)
			return store.State{}
		}
		for st := range ch {
			if last = st; slices.Contains(want, st.Status) {
				return st
			}
		}
		if last.Status.Terminal() {
			break // it ended otherwise; a watch that ended for another reason is opened again
		}
	}
	t.Fatalf("trackertest: task %q did not reach status %v (%v)\n%s", id, want, context.Cause(ctx), show(last))
	return last
}

// show returns st as indented JSON, for a failure message.
func show(st store.State) string {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Sprintf("%+v", st)
	}
	return string(b)
}

// steps returns the names and statuses of steps, for a failure message.
func steps(steps []store.Step) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, s := range steps {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s:%s", s.Name, s.Status)
		if s.Error != "" {
			fmt.Fprintf(&b, " (%q)", s.Error)
		}
	}
	b.WriteByte(']')
	return b.String()
}

// fieldsDiff says how the JSON fields got differ from want, each of whose
// values is encoded as JSON first, or returns "".
func fieldsDiff(got map[string]json.RawMessage, want map[string]any) string {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		w, err := json.Marshal(want[k])
		if err != nil {
			return fmt.Sprintf("%s: want a value that encodes as JSON: %v", k, err)
		}
		g, ok := got[k]
		if !ok {
			return fmt.Sprintf("%s is missing, want %s", k, w)
		}
		if !jsonEqual(g, w) {
			return fmt.Sprintf("%s is %s, want %s", k, g, w)
		}
	}
	return ""
}

// jsonEqual reports whether a and b encode the same JSON value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}
