package memstore

import (
	"context"
	"fmt"

	"github.com/taskstatus/taskstatus/internal/pagetoken"
	"github.com/taskstatus/taskstatus/store"
)

// List implements [store.Lister]. It reads the list of all tasks, or
// those of the filter's statuses merged, from the page's cursor: a page
// costs in proportion to the tasks it passes over, not to those held.
// Expired tasks the sweep has not removed yet are removed first.
func (s *Store) List(ctx context.Context, f store.Filter, pageSize int, pageToken string) (store.Page, error) {
	if err := ctx.Err(); err != nil {
		return store.Page{}, fmt.Errorf("memstore: %w", err)
	}
	size, cur, err := pagetoken.Args(f, pageSize, pageToken)
	if err != nil {
		return store.Page{}, fmt.Errorf("memstore: list: %w", err)
	}
	s.sweepExpired() // so that no task that has expired is listed
	s.idxMu.RLock()
	defer s.idxMu.RUnlock()
	if s.shards[0].closed {
		return store.Page{}, errClosed
	}
	lists := s.lists(f)
	heads := make([]*entry, len(lists))
	for i, l := range lists {
		heads[i] = l.first(cur)
	}
	page := store.Page{Tasks: make([]store.State, 0, min(size, 64))}
	for {
		e := popNewest(heads, lists)
		if e == nil {
			return page, nil
		}
		// Match reads none of the fields an ended entry keeps apart.
		if !f.Match(e.st) {
			continue
		}
		if len(page.Tasks) == size {
			last := page.Tasks[size-1]
			page.NextPageToken = pagetoken.Make(f, pagetoken.Cursor{Created: last.CreatedAt.UnixNano(), ID: last.ID})
			return page, nil
		}
		page.Tasks = append(page.Tasks, e.state())
	}
}

// lists returns the lists that hold every task f may match: the lists of
// its statuses, or the list of all tasks. The index's lock is held.
func (s *Store) lists(f store.Filter) []*skiplist {
	if len(f.Statuses) == 0 {
		return []*skiplist{&s.idx.all}
	}
	var lists []*skiplist
	for _, st := range f.Statuses {
		if l := s.idx.byStatus[st]; l != nil && !containsList(lists, l) {
			lists = append(lists, l)
		}
	}
	return lists
}

func containsList(lists []*skiplist, l *skiplist) bool {
	for _, m := range lists {
		if m == l {
			return true
		}
	}
	return false
}

// popNewest returns the newest of the entries at heads, the next of each
// list, and moves its list's head on; nil when every list is done.
func popNewest(heads []*entry, lists []*skiplist) *entry {
	best := -1
	for i, e := range heads {
		if e != nil && (best < 0 || newer(e, heads[best])) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	e := heads[best]
	heads[best] = e.links(lists[best].li)[0]
	return e
}

// Count implements [store.Lister]. Expired tasks the sweep has not removed
// yet are removed first, so that none is counted.
func (s *Store) Count(ctx context.Context, f store.Filter) (map[store.Status]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	if err := pagetoken.CountArgs(f); err != nil {
		return nil, fmt.Errorf("memstore: count: %w", err)
	}
	s.sweepExpired()
	s.idxMu.RLock()
	defer s.idxMu.RUnlock()
	if s.shards[0].closed {
		return nil, errClosed
	}
	counts := make(map[store.Status]int64)
	for status, n := range s.idx.counts[countKey(f.Kind, f.Label)] {
		counts[status] = n
	}
	return counts, nil
}
