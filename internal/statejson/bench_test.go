package statejson

import (
	"testing"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// benchStates returns the states of the benchmarks: a task that succeeded
// after five steps, with results (finished), and a task as a listing
// page of redisstore's BenchmarkListPage holds it (listed).
func benchStates() []struct {
	name string
	st   store.State
} {
	at := time.Date(2025, 11, 12, 10, 0, 0, 123456789, time.UTC)
	listed := store.State{ID: "00000064-0000-4000-8000-000000000064", Incarnation: "inc-1", Status: store.StatusFailed,
		Kind: "document", Labels: map[string]string{"project_id": "p0"}, CreatedAt: at, UpdatedAt: at, Attempt: 1, Version: 1}
	return []struct {
		name string
		st   store.State
	}{{"finished", finishedState()}, {"listed", listed}}
}

// BenchmarkDecode decodes each state of benchStates: by the hand-written
// decoder (new), and as Decode did before, with encoding/json.
func BenchmarkDecode(b *testing.B) {
	for _, bs := range benchStates() {
		data, err := Encode(bs.st)
		if err != nil {
			b.Fatal(err)
		}
		for _, bc := range []struct {
			name   string
			decode func([]byte) (store.State, error)
		}{{"new", Decode}, {"encoding-json", decodeReflect}} {
			b.Run(bs.name+"/"+bc.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := bc.decode(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEncode encodes each state of benchStates: by the hand-written
// encoder (new), and as Encode did before, with encoding/json.
func BenchmarkEncode(b *testing.B) {
	for _, bs := range benchStates() {
		for _, bc := range []struct {
			name   string
			encode func(store.State) ([]byte, error)
		}{{"new", Encode}, {"encoding-json", encodeReflect}} {
			b.Run(bs.name+"/"+bc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := bc.encode(bs.st); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
