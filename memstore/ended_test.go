package memstore

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// fullEndedState returns a failed task with a value in every field of
// State, of its steps, sub-steps, progress and previous attempts, its
// times in UTC with nanoseconds, as the tracker writes them.
func fullEndedState(id string) store.State {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	tick := func(n int) time.Time { return at.Add(time.Duration(n) * 104729 * time.Microsecond) }
	details := func(v string) map[string]json.RawMessage {
		return map[string]json.RawMessage{"exception_type": json.RawMessage(v), "nested": json.RawMessage(`{"a":[1,2.5,null]}`)}
	}
	return store.State{
		ID: id, Incarnation: "q3k9x1v0p2", CorrelationID: "c9a7f417-c2d2-48a3-802b-fa00e20dd207",
		Status: store.StatusFailed, Kind: "document", Labels: map[string]string{"tenant": "t1", "project_id": "p"},
		CreatedAt: at, StartedAt: tick(1), UpdatedAt: tick(9), CompletedAt: tick(9), LeaseUntil: tick(20),
		ErrorMessage: "Vectorization failed ✗", ErrorDetails: details(`"ConnectionError"`),
		Steps: []store.Step{
			{Name: "chunk", Status: store.StepSuccess, StartedAt: tick(2), CompletedAt: tick(3), Error: "retried once", Attempt: 2,
				Progress: store.Progress{Done: 10, Total: 10, Message: "chunks"},
				SubSteps: []store.SubStep{{Name: "split", Status: store.StepSuccess, StartedAt: tick(2), CompletedAt: tick(3), Error: "slow"}}},
			{Name: "embed", Status: store.StepFailed, StartedAt: tick(4), CompletedAt: tick(8), Error: "Connection refused", Attempt: 3,
				Progress: store.Progress{Done: 7000, Total: 10000, Message: "vectors"},
				SubSteps: []store.SubStep{
					{Name: "batch-1", Status: store.StepSuccess, StartedAt: tick(4), CompletedAt: tick(5), Error: "partial"},
					{Name: "batch-2", Status: store.StepFailed, StartedAt: tick(6), CompletedAt: tick(8), Error: "Connection refused"},
				}},
		},
		Progress:          store.Progress{Done: 1, Total: 2, Message: "embedding"},
		Result:            map[string]json.RawMessage{"entities_extracted": json.RawMessage(`42`), "vector_indexed": json.RawMessage(`false`)},
		CancelRequestedAt: tick(7), CancelReason: "superseded «v2»",
		Attempt: 2,
		PreviousAttempts: []store.Attempt{{Attempt: 1, Status: store.StatusFailed, StartedAt: tick(-5), CompletedAt: tick(-1),
			ErrorMessage: "timeout", ErrorDetails: details(`"TimeoutError"`)}},
		Version: 7,
	}
}

// requireNoZeroField fails if v, or a struct, slice element or map value
// within it, has a field holding its zero value: a field added to State
// must be set by fullEndedState, so that the test checks it is kept.
func requireNoZeroField(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	if v.IsZero() {
		t.Fatalf("%s is zero: set it in fullEndedState", path)
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range v.NumField() {
			requireNoZeroField(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 { // a json.RawMessage
			return
		}
		require.Positive(t, v.Len(), "%s is empty: set it in fullEndedState", path)
		for i := range v.Len() {
			requireNoZeroField(t, v.Index(i), path+"[i]")
		}
	case reflect.Map:
		require.Positive(t, v.Len(), "%s is empty: set it in fullEndedState", path)
		for it := v.MapRange(); it.Next(); {
			requireNoZeroField(t, it.Value(), path+"[k]")
		}
	}
}

// TestEndedKeepsEveryField writes an ended task with every field set and
// reads it back through Get, Watch and List: each must give the state
// written, reflect.DeepEqual to it as when the store kept the State
// itself, from the smaller form of ended.go.
func TestEndedKeepsEveryField(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := t.Context()
	want := fullEndedState("full")
	requireNoZeroField(t, reflect.ValueOf(want), "State")
	written := want.Clone()
	require.NoError(t, s.Put(ctx, store.Write{State: written}))
	require.NotNil(t, s.shard("full").tasks["full"].ended, "an ended task written by the tracker is kept in the smaller form")
	scribbleAll(written)

	got, err := s.Get(ctx, "full")
	require.NoError(t, err)
	require.True(t, want.Equal(got), "Get must return the state written")
	require.Equal(t, want, got, "Get must return the state written, as reflect.DeepEqual sees it")
	scribbleAll(got)
	got, err = s.Get(ctx, "full")
	require.NoError(t, err)
	require.Equal(t, want, got, "changing the states written and read must change nothing stored")

	ch, err := s.Watch(ctx, "full")
	require.NoError(t, err)
	require.Equal(t, want, <-ch, "Watch must deliver the state written")

	page, err := s.List(ctx, store.Filter{}, 10, "")
	require.NoError(t, err)
	require.Len(t, page.Tasks, 1)
	require.Equal(t, want, page.Tasks[0], "List must return the state written")
}

// scribbleAll changes, in place, every part of st that a State shares
// with its copies unless they are deep: its maps, slices and the bytes of
// its JSON values.
func scribbleAll(st store.State) {
	for k := range st.Labels {
		st.Labels[k] += "!"
	}
	scribbleFields := func(m map[string]json.RawMessage) {
		for _, v := range m {
			for i := range v {
				v[i] = ' '
			}
		}
		m["added"] = json.RawMessage(`0`)
	}
	scribbleFields(st.Result)
	scribbleFields(st.ErrorDetails)
	for i := range st.Steps {
		st.Steps[i].Name += "!"
		for j := range st.Steps[i].SubSteps {
			st.Steps[i].SubSteps[j].Name += "!"
		}
	}
	for i := range st.PreviousAttempts {
		st.PreviousAttempts[i].ErrorMessage += "!"
		scribbleFields(st.PreviousAttempts[i].ErrorDetails)
	}
}

// TestEndedKeepsShapes writes ended tasks whose parts a smaller form
// could lose: the same instant in another location or with a monotonic
// reading, zero times, empty but not nil maps and slices, nil values.
// Get must return each as written, as reflect.DeepEqual sees it.
func TestEndedKeepsShapes(t *testing.T) {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name    string
		edit    func(*store.State)
		compact bool // whether the store keeps it in the smaller form
	}{
		{"as the tracker writes", func(*store.State) {}, true},
		{"a step time in another location", func(s *store.State) { s.Steps[0].StartedAt = at.In(time.FixedZone("CET", 3600)) }, false},
		{"a sub-step time in Local", func(s *store.State) { s.Steps[1].SubSteps[0].CompletedAt = at.Local() }, false},
		{"a step time with a monotonic reading", func(s *store.State) { s.Steps[0].CompletedAt = time.Now() }, false},
		{"a step time beyond 2262", func(s *store.State) { s.Steps[0].CompletedAt = at.AddDate(300, 0, 0) }, false},
		{"a step time at noTime", func(s *store.State) { s.Steps[0].CompletedAt = time.Unix(0, math.MinInt64).UTC() }, false},
		{"a zero step time in another location", func(s *store.State) { s.Steps[0].StartedAt = time.Time{}.In(time.FixedZone("CET", 3600)) }, false},
		{"zero step times", func(s *store.State) { s.Steps[0].StartedAt, s.Steps[0].CompletedAt = time.Time{}, time.Time{} }, true},
		{"the Unix epoch", func(s *store.State) { s.Steps[0].StartedAt = time.Unix(0, 0).UTC() }, true},
		{"top-level times in another location", func(s *store.State) { s.CreatedAt = at.In(time.FixedZone("CET", 3600)) }, true},
		{"nil steps and maps", func(s *store.State) { s.Steps, s.Result, s.ErrorDetails = nil, nil, nil }, true},
		{"empty steps and maps", func(s *store.State) {
			s.Steps, s.Result, s.ErrorDetails = []store.Step{}, map[string]json.RawMessage{}, map[string]json.RawMessage{}
		}, true},
		{"empty sub-steps", func(s *store.State) { s.Steps[0].SubSteps = []store.SubStep{} }, true},
		{"nil and empty values, an empty key", func(s *store.State) {
			s.Result = map[string]json.RawMessage{"nil": nil, "empty": {}, "": json.RawMessage(`1`)}
		}, true},
		{"a long value", func(s *store.State) {
			s.ErrorDetails = map[string]json.RawMessage{"trace": json.RawMessage(`"` + string(make([]byte, 70_000)) + `"`)}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			want := fullEndedState("a")
			tt.edit(&want)
			require.NoError(t, s.Put(t.Context(), store.Write{State: want.Clone()}))
			assert.Equal(t, tt.compact, s.shard("a").tasks["a"].ended != nil, "kept in the smaller form")
			got, err := s.Get(t.Context(), "a")
			require.NoError(t, err)
			require.Equal(t, want, got, "Get must return the state written")
		})
	}
}

// TestWriteOfEndedTask writes a retry of an ended task, then ends it
// again: no part of the state before a write may outlive it.
func TestWriteOfEndedTask(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := t.Context()
	v1 := fullEndedState("a")
	v1.Version = 1
	require.NoError(t, s.Put(ctx, store.Write{State: v1.Clone()}))

	retry := v1.Clone()
	retry.Version, retry.Status = 2, store.StatusRunning
	retry.Steps, retry.Result, retry.ErrorDetails = nil, nil, nil
	require.NoError(t, s.Put(ctx, store.Write{State: retry.Clone(), Prev: 1}))
	got, err := s.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, retry, got, "a retry keeps none of the steps, result and details of the attempt before")

	done := retry.Clone()
	done.Version, done.Status = 3, store.StatusSuccess
	done.Result = map[string]json.RawMessage{"n": json.RawMessage(`2`)}
	require.NoError(t, s.Put(ctx, store.Write{State: done.Clone(), Prev: 2}))
	got, err = s.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, done, got)
}

// FuzzEnded splits states made from its input into the smaller form and
// back: whenever compact takes a state, restore must give it back as
// reflect.DeepEqual sees it, and compact must take every state whose step
// times are zero or in UTC without a monotonic reading.
func FuzzEnded(f *testing.F) {
	f.Add("entities_extracted", []byte(`42`), "vector_indexed", []byte(`true`), int64(1762941600123456789), uint16(0))
	f.Add("", []byte{}, "", []byte(nil), int64(0), uint16(0xffff))
	f.Add("k\x80\xff", []byte("\x00\x01"), "k2", []byte(`"x"`), int64(math.MinInt64), uint16(0x5a5a))
	f.Fuzz(func(t *testing.T, k1 string, v1 []byte, k2 string, v2 []byte, ns int64, shape uint16) {
		bit := func(i int) bool { return shape&(1<<i) != 0 }
		fields := func(i int) map[string]json.RawMessage {
			switch {
			case bit(i):
				return nil
			case bit(i + 1):
				return map[string]json.RawMessage{}
			}
			return map[string]json.RawMessage{k1: v1, k2: v2}
		}
		tm, canonical := time.Unix(0, ns).UTC(), ns != math.MinInt64
		switch {
		case bit(4):
			tm, canonical = time.Time{}, true
		case bit(5):
			tm, canonical = tm.In(time.FixedZone("X", 0)), false
		case bit(6):
			tm, canonical = time.Now().Add(time.Duration(ns)), false
		}
		st := store.State{ID: "a", Status: store.StatusSuccess, Result: fields(0), ErrorDetails: fields(2), Version: 1}
		if !bit(7) {
			st.Steps = []store.Step{{Name: k1, Status: store.StepSuccess, StartedAt: tm, Error: k2}}
			if !bit(8) {
				st.Steps[0].SubSteps = []store.SubStep{{Name: k2, CompletedAt: tm}}
			}
			if bit(9) {
				st.Steps[0].SubSteps = []store.SubStep{}
			}
		}
		if bit(10) {
			st.Steps = []store.Step{}
		}

		head, x, ok := compact(st)
		if len(st.Steps) == 0 {
			canonical = true // no time to refuse
		}
		require.Equal(t, canonical, ok, "compact of a state whose step time is %#v", tm)
		if !ok {
			return
		}
		got := head.Clone()
		x.restore(&got)
		require.Equal(t, st, got, "restore must give back the state compact took")
	})
}
