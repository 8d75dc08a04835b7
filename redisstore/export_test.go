package redisstore

import (
	"context"

	"github.com/taskstatus/taskstatus/store"
)

// TaskKey returns the key of the hash that holds task id, for the tests
// that read or write a task's hash directly.
func TaskKey(prefix, id string) string {
	ks := newKeyspace(prefix)
	return ks.task(id)
}

// PutPipelined makes the writes ws with the put script, all in one
// pipeline, as Store.Put makes each: the ceiling of what batching writes
// can give, for the benchmarks. It returns the first error.
func PutPipelined(ctx context.Context, s *Store, ws []store.Write) error {
	p := s.client.Pipeline()
	for _, w := range ws {
		keys, args, err := s.putCall(w)
		if err != nil {
			return err
		}
		putScript.EvalSha(ctx, p, keys, args...)
	}
	_, err := p.Exec(ctx)
	return err
}

// Queued returns how many calls wait for a pipeline of s.
func Queued(s *Store) int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return len(s.batch.queue)
}

// Sending returns how many pipelines of s are in flight.
func Sending(s *Store) int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return s.batch.sending
}
