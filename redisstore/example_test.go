package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/redisstore"
	"github.com/taskstatus/taskstatus/store"
)

func Example() {
	mr, err := miniredis.Run() // stands in for a Redis server
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mr.Close()
	client := redis.NewClient(&redis.Options{
		Addr:                  mr.Addr(),
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	})
	defer client.Close()

	s, err := redisstore.New(client)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	st := store.State{
		ID: "doc-123", Incarnation: "k3x9", Status: store.StatusPending,
		CreatedAt: at, UpdatedAt: at, Attempt: 1, Version: 1,
	}
	// Prev 0: the write creates the task, and fails if it exists.
	created := store.Write{State: st, Prev: 0, TTL: 24 * time.Hour, ID: "w1"}
	if err := s.Put(ctx, created); err != nil {
		fmt.Println(err)
		return
	}

	// The same write sent again (its reply was lost) is recognised.
	fmt.Println("resent:", s.Put(ctx, created))

	// A second writer that also found no task loses the race.
	err = s.Put(ctx, store.Write{State: st, Prev: 0, TTL: 24 * time.Hour, ID: "w2"})
	fmt.Println("conflict:", errors.Is(err, store.ErrConflict))

	got, err := s.Get(ctx, "doc-123")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.Status, got.Version)

	// What redis-cli HGETALL taskstatus:{t9}t:doc-123 shows (the task's
	// shard is 9), but for the binary index field the listing reads.
	for _, field := range []string{"version", "inc", "state", "writes", "announced"} {
		fmt.Printf("%s: %s\n", field, mr.HGet("taskstatus:{t9}t:doc-123", field))
	}
	// Output:
	// resent: <nil>
	// conflict: true
	// pending 1
	// version: 1
	// inc: k3x9
	// state: {"id":"doc-123","incarnation":"k3x9","status":"pending","created_at":"2025-11-12T10:00:00Z","updated_at":"2025-11-12T10:00:00Z","attempt":1,"version":1}
	// writes: w1
	// announced: 1
}

func ExampleStore_Watch() {
	mr, err := miniredis.Run()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer mr.Close()
	client := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, DisableIdentity: true})
	defer client.Close()
	s, err := redisstore.New(client)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close() // ends the watches still open
	ctx := context.Background()
	at := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	st := store.State{
		ID: "doc-123", Incarnation: "k3x9", Status: store.StatusPending,
		CreatedAt: at, UpdatedAt: at, Attempt: 1, Version: 1,
	}
	if err := s.Put(ctx, store.Write{State: st, TTL: time.Hour}); err != nil {
		fmt.Println(err)
		return
	}

	ch, err := s.Watch(ctx, "doc-123")
	if err != nil {
		fmt.Println(err)
		return
	}
	// The channel delivers the current state, then each change, and closes
	// after the task ends. Here each change is made after the reader has
	// seen the previous one, so none is skipped.
	for got := range ch {
		fmt.Println(got.Version, got.Status)
		st = st.Clone()
		st.Version++
		switch got.Status {
		case store.StatusPending:
			st.Status = store.StatusRunning
		case store.StatusRunning:
			st.Status = store.StatusSuccess
		default:
			continue
		}
		if err := s.Put(ctx, store.Write{State: st, Prev: st.Version - 1, TTL: time.Hour}); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Output:
	// 1 pending
	// 2 running
	// 3 success
}
