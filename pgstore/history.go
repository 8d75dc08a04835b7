package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/taskstatus/taskstatus/internal/statejson"
	"github.com/taskstatus/taskstatus/store"
)

// History returns the states that the announced writes of task id
// recorded, in the order written: its transitions, the states a watcher
// is sent (quiet writes, such as lease renewals, leave none). It holds
// every incarnation of the id, each state naming its own, and outlives
// the task (its deletion or expiry) until the history's retention ends
// (see [WithHistoryRetention]). An id without history returns none and no
// error.
func (s *Store) History(ctx context.Context, id string) ([]store.State, error) {
	ctx, cancel, err := s.begin(ctx, "history", id)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.pool.Query(ctx, s.q.history, id)
	if err != nil {
		return nil, wrap(fmt.Sprintf("history %q", id), err)
	}
	defer rows.Close()
	var states []store.State
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, wrap(fmt.Sprintf("history %q", id), err)
		}
		st, err := statejson.Decode([]byte(data))
		if err != nil {
			return nil, fmt.Errorf("pgstore: history %q: %w", id, err)
		}
		states = append(states, st)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap(fmt.Sprintf("history %q", id), err)
	}
	return states, nil
}

// Reap removes the tasks that have expired and the history older than
// its retention, a batch of rows per statement (see [WithReapBatch]), until
// none is left, and returns how many rows it removed. The store calls it
// in the background (see [WithReapInterval]); instances that do so at once
// share the work. Expired tasks are never read, listed or counted, reaped
// or not: reaping frees their space.
func (s *Store) Reap(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, fmt.Errorf("pgstore: reap: %w", errClosed)
	}
	var total int64
	now := s.now()
	for _, step := range []struct {
		sql string
		arg time.Time
	}{
		{s.q.reapTasks, now},
		{s.q.reapHistory, now.Add(-s.retention)},
	} {
		for {
			n, err := s.reapBatchOf(ctx, step.sql, step.arg)
			total += n
			if err != nil {
				return total, wrap("reap", err)
			}
			if n < int64(s.reapBatch) {
				break
			}
		}
	}
	return total, nil
}

// reapBatchOf runs one batch of reaping statement sql.
func (s *Store) reapBatchOf(ctx context.Context, sql string, at time.Time) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tag, err := s.pool.Exec(ctx, sql, at, s.reapBatch)
	return tag.RowsAffected(), err
}

// every calls f every d until the store is closed.
func (s *Store) every(d time.Duration, f func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-tick.C:
			f()
		}
	}
}

// reapOnce calls Reap, and logs its failure.
func (s *Store) reapOnce() {
	if _, err := s.Reap(s.bg); err != nil && s.bg.Err() == nil {
		s.logger.Warn("pgstore: reaping expired tasks and old history", "err", err)
	}
}
