package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/taskstatus/taskstatus/memstore"
	"github.com/taskstatus/taskstatus/store"
)

// A memstore is a versioned record store: each write names the version it
// follows, so a stale write is refused instead of lost.
func Example() {
	s, err := memstore.New(memstore.WithMaxTasks(100_000))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	st := store.State{ID: "doc-123", Incarnation: "a1", Status: store.StatusPending, Version: 1}
	fmt.Println(s.Put(ctx, store.Write{State: st, TTL: 24 * time.Hour}))

	running := st
	running.Status, running.Version = store.StatusRunning, 2
	fmt.Println(s.Put(ctx, store.Write{State: running, Prev: 1, TTL: 24 * time.Hour}))

	stale := st
	stale.Status, stale.Version = store.StatusCanceled, 2 // computed from version 1
	fmt.Println(errors.Is(s.Put(ctx, store.Write{State: stale, Prev: 1, TTL: 24 * time.Hour}), store.ErrConflict))

	got, _ := s.Get(ctx, "doc-123")
	fmt.Println(got.Status, got.Version)
	// Output:
	// <nil>
	// <nil>
	// true
	// running 2
}

// Watch delivers the current state, then each change, and closes after
// the task ends.
func ExampleStore_Watch() {
	s, _ := memstore.New()
	defer s.Close()
	ctx := context.Background()
	_ = s.Put(ctx, store.Write{State: store.State{ID: "doc-123", Status: store.StatusRunning, Version: 1}})

	ch, _ := s.Watch(ctx, "doc-123")
	fmt.Println((<-ch).Status)
	_ = s.Put(ctx, store.Write{State: store.State{ID: "doc-123", Status: store.StatusSuccess, Version: 2}, Prev: 1})
	for st := range ch {
		fmt.Println(st.Status, st.Version)
	}
	// Output:
	// running
	// success 2
}
