package pgstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/taskstatus/taskstatus/store"
)

// watching holds the open watches, which one goroutine, pollLoop, reads
// for changes every poll interval.
type watching struct {
	mu      sync.Mutex
	watches map[*watcher]struct{}
}

// watcher is one open watch.
type watcher struct {
	id, inc string
	seen    int64            // the version last handed on; pollLoop's own
	latest  chan store.State // holds the newest state not yet sent
	ended   chan struct{}    // closed when the task is gone or the store failed
	endOnce sync.Once
}

func (w *watcher) end() { w.endOnce.Do(func() { close(w.ended) }) }

// hand gives st to the watch, in place of a state it has not sent yet.
func (w *watcher) hand(st store.State) {
	select {
	case <-w.latest:
	default:
	}
	w.latest <- st // only pollLoop sends, and it just made room
	w.seen = st.Version
}

// Watch implements [store.Watcher]. It reads the task, and then the
// store's poller reads it again every poll interval (see Watches in the
// package doc), with every other task being watched, in one SELECT.
func (s *Store) Watch(ctx context.Context, id string) (<-chan store.State, error) {
	st, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	out := make(chan store.State)
	w := &watcher{id: id, inc: st.Incarnation, seen: st.Version, latest: make(chan store.State, 1), ended: make(chan struct{})}
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	if s.closed.Load() {
		return nil, fmt.Errorf("pgstore: watch %q: %w", id, errClosed)
	}
	if !st.Status.Terminal() {
		s.watch.watches[w] = struct{}{}
	}
	s.done.Go(func() { s.serve(ctx, w, st, out) })
	return out, nil
}

// serve sends first, then each state handed to w, on out, until the
// watch ends, and then closes out.
func (s *Store) serve(ctx context.Context, w *watcher, first store.State, out chan<- store.State) {
	defer close(out)
	defer func() {
		s.watch.mu.Lock()
		delete(s.watch.watches, w)
		s.watch.mu.Unlock()
	}()
	st, pending := first, true
	for {
		var send chan<- store.State // nil, which blocks, while nothing is pending
		if pending {
			send = out
		}
		select {
		case send <- st:
			if st.Status.Terminal() {
				return
			}
			pending = false
		case st = <-w.latest: // a reader that falls behind gets the latest
			pending = true
		case <-w.ended:
			return
		case <-ctx.Done():
			return
		case <-s.bg.Done():
			return
		}
	}
}

// pollOnce reads the watched tasks once, hands each watch the state of a
// version it has not seen, and ends the watches of tasks that are gone,
// created anew or corrupt. If the store cannot be read it ends every
// watch: their readers learn of the failure when they read the task.
func (s *Store) pollOnce() {
	s.watch.mu.Lock()
	byID := make(map[string][]*watcher, len(s.watch.watches))
	for w := range s.watch.watches {
		byID[w.id] = append(byID[w.id], w)
	}
	s.watch.mu.Unlock()
	if len(byID) == 0 {
		return
	}
	found, err := s.readWatched(byID)
	if err != nil {
		if s.bg.Err() == nil {
			s.logger.Warn("pgstore: watched tasks could not be read; their watches end", "err", err)
		}
		for _, ws := range byID {
			for _, w := range ws {
				w.end()
			}
		}
		return
	}
	for id, ws := range byID {
		row, ok := found[id]
		for _, w := range ws {
			switch {
			case !ok || row.corrupt || string(row.inc) != w.inc:
				w.end() // deleted, expired, corrupt or created anew
			case row.st != nil && row.announced > w.seen:
				w.hand(row.st.Clone())
			}
		}
	}
}

// polled is what pollOnce reads of a watched task.
type polled struct {
	inc       []byte
	announced int64
	st        *store.State // nil unless a watcher has not seen the announced version
	corrupt   bool         // its state could not be decoded (and was logged)
}

// readWatched reads the watched tasks, each one's state only if one of
// its watches has not seen its announced version.
func (s *Store) readWatched(byID map[string][]*watcher) (map[string]polled, error) {
	ids := make([]string, 0, len(byID))
	seen := make([]int64, 0, len(byID))
	for id, ws := range byID {
		least := ws[0].seen
		for _, w := range ws[1:] {
			least = min(least, w.seen)
		}
		ids = append(ids, id)
		seen = append(seen, least)
	}
	ctx, cancel := context.WithTimeout(s.bg, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, s.q.poll, ids, seen, s.now())
	if err != nil {
		return nil, wrap("watch", err)
	}
	defer rows.Close()
	found := make(map[string]polled, len(ids))
	for rows.Next() {
		var id string
		var p polled
		var version int64
		var data *string
		if err := rows.Scan(&id, &p.inc, &version, &p.announced, &data); err != nil {
			return nil, wrap("watch", err)
		}
		if data != nil {
			st, err := s.decodeRow(id, p.inc, version, *data)
			if err != nil {
				s.logger.Warn("pgstore: a watched task is corrupt; its watches end", "id", id, "err", err)
				p.corrupt = true
			} else {
				p.st = &st
			}
		}
		found[id] = p
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("watch", err)
	}
	return found, nil
}
