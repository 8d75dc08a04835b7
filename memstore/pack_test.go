package memstore

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// requireUnpacks fails unless st packs and unpacks to an equal state whose
// times are all in UTC.
func requireUnpacks(t *testing.T, st store.State) {
	t.Helper()
	got, err := unpack(string(pack(nil, &st)))
	require.NoError(t, err)
	require.True(t, st.Equal(got), "unpacked state differs:\nwant %+v\ngot  %+v", st, got)
	times := []time.Time{got.CreatedAt, got.StartedAt, got.UpdatedAt, got.CompletedAt, got.LeaseUntil}
	for _, s := range got.Steps {
		times = append(times, s.StartedAt, s.CompletedAt)
	}
	for _, tm := range times {
		require.Equal(t, time.UTC, tm.Location())
	}
}

func TestPackRoundTrip(t *testing.T) {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	full := store.State{
		ID:            "doc-☃",
		CorrelationID: "c9a7f417-c2d2-48a3-802b-fa00e20dd207",
		Status:        store.StatusFailed,
		CreatedAt:     at,
		StartedAt:     at.Add(time.Second),
		UpdatedAt:     at.Add(3 * time.Second),
		CompletedAt:   at.Add(3 * time.Second),
		LeaseUntil:    at.Add(time.Minute),
		ErrorMessage:  "Vectorization failed: Connection refused",
		ErrorDetails: map[string]json.RawMessage{
			"exception_type": json.RawMessage(`"ConnectionError"`),
			"failed_step":    json.RawMessage(`"embedding_generation"`),
		},
		Steps: []store.Step{
			{Name: "file_node_creation", Status: store.StepSuccess, StartedAt: at, CompletedAt: at.Add(time.Second), Attempt: 1},
			{Name: "embedding_generation", Status: store.StepFailed, StartedAt: at.Add(time.Second), Error: "Connection refused", Attempt: 3},
			{Name: "freshness_analysis", Status: store.StepSkipped},
		},
		Progress: store.Progress{Done: -2, Total: 1 << 62, Message: "embedding"},
		Result:   map[string]json.RawMessage{"entities_extracted": json.RawMessage(`42`)},
		Attempt:  2,
		Version:  1<<63 - 1,
	}
	cases := map[string]store.State{
		"every field": full,
		"zero":        {},
		"times before 1970 and after 2262": {
			ID: "t", Status: store.StatusSuccess,
			CreatedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
			UpdatedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		},
		"times before creation": {
			ID: "t", Status: store.StatusFailed, CreatedAt: at,
			StartedAt: at.Add(-time.Hour), UpdatedAt: at.Add(-time.Nanosecond),
			Steps: []store.Step{{Name: "a", StartedAt: at.Add(-1000 * time.Hour)}},
		},
		"large values": {
			ID: "big", Status: store.StatusCanceled,
			ErrorMessage: strings.Repeat("x", 1<<16),
			Steps:        make([]store.Step, 256),
		},
	}
	for name, st := range cases {
		t.Run(name, func(t *testing.T) { requireUnpacks(t, st) })
	}
}

// TestUnpackRejectsDamage checks that unpack reports a damaged packed state
// as corrupt, whichever byte is cut or changed.
func TestUnpackRejectsDamage(t *testing.T) {
	st := store.State{ID: "doc", Status: store.StatusSuccess, Steps: []store.Step{{Name: "a"}}, Version: 3}
	packed := string(pack(nil, &st))
	for i := range len(packed) {
		_, err := unpack(packed[:i])
		require.ErrorIs(t, err, store.ErrCorrupt, "cut at %d", i)
	}
	_, err := unpack(packed + "x")
	require.ErrorIs(t, err, store.ErrCorrupt, "trailing byte")
	_, err = unpack(strings.Repeat("\xff", 11))
	require.ErrorIs(t, err, store.ErrCorrupt, "varint over 64 bits")
}

// FuzzUnpack checks that unpack never panics, and that what it accepts
// packs again to the same state.
func FuzzUnpack(f *testing.F) {
	st := store.State{
		ID: "doc", Status: store.StatusFailed, CreatedAt: time.Unix(1, 2),
		ErrorDetails: map[string]json.RawMessage{"k": json.RawMessage(`1`)},
		Steps:        []store.Step{{Name: "a", Status: store.StepFailed, Error: "e", Attempt: 2}},
		Version:      7,
	}
	f.Add(string(pack(nil, &st)))
	f.Add("")
	f.Fuzz(func(t *testing.T, packed string) {
		got, err := unpack(packed)
		if err != nil {
			require.ErrorIs(t, err, store.ErrCorrupt)
			return
		}
		requireUnpacks(t, got)
	})
}
