package pgstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/taskstatus/taskstatus/internal/pagetoken"
	"github.com/taskstatus/taskstatus/store"
)

// List implements [store.Lister] with one SELECT of at most pageSize+1
// rows, newest first. PostgreSQL picks the index: of all tasks in creation
// order, by status or by kind in creation order (read in order for one
// status), the GIN index of labels, or the lease end's. A page whose
// filter matches few of the tasks it passes over, or several statuses,
// may cost the server a read and sort of every match before the cursor:
// the cost grows with the matches, not with the table.
func (s *Store) List(ctx context.Context, f store.Filter, pageSize int, pageToken string) (store.Page, error) {
	if err := ctx.Err(); err != nil {
		return store.Page{}, fmt.Errorf("pgstore: list: %w", err)
	}
	if s.closed.Load() {
		return store.Page{}, fmt.Errorf("pgstore: list: %w", errClosed)
	}
	size, cur, err := pagetoken.Args(f, pageSize, pageToken)
	if err != nil {
		return store.Page{}, fmt.Errorf("pgstore: list: %w", err)
	}
	var w where
	w.filter(s.now(), f)
	if cur != nil {
		w.add("(created_ns, id) < (%s, %s)", cur.Created, cur.ID)
	}
	sql := fmt.Sprintf("SELECT incarnation, version, state, id FROM %s WHERE %s ORDER BY created_ns DESC, id DESC LIMIT %d",
		qualify(s.schema, "{schema}.tasks"), w.String(), size+1)

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, sql, w.args...)
	if err != nil {
		return store.Page{}, wrap("list", err)
	}
	defer rows.Close()
	page := store.Page{Tasks: make([]store.State, 0, min(size, 64))}
	for rows.Next() {
		var inc []byte
		var version int64
		var data, id string
		if err := rows.Scan(&inc, &version, &data, &id); err != nil {
			return store.Page{}, wrap("list", err)
		}
		if len(page.Tasks) == size {
			last := page.Tasks[size-1]
			page.NextPageToken = pagetoken.Make(f, pagetoken.Cursor{Created: last.CreatedAt.UnixNano(), ID: last.ID})
			break
		}
		st, err := s.decodeRow(id, inc, version, data)
		if err != nil {
			return store.Page{}, fmt.Errorf("pgstore: list: %w", err)
		}
		page.Tasks = append(page.Tasks, st)
	}
	if err := rows.Err(); err != nil {
		return store.Page{}, wrap("list", err)
	}
	return page, nil
}

// Count implements [store.Lister] with one SELECT ... GROUP BY status,
// which reads an index entry, or a row, of every task it counts: its cost
// grows with the count. No counter is kept, which every write would pay
// for.
func (s *Store) Count(ctx context.Context, f store.Filter) (map[store.Status]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: count: %w", err)
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("pgstore: count: %w", errClosed)
	}
	if err := pagetoken.CountArgs(f); err != nil {
		return nil, fmt.Errorf("pgstore: count: %w", err)
	}
	var w where
	w.filter(s.now(), f)
	sql := fmt.Sprintf("SELECT status, count(*) FROM %s WHERE %s GROUP BY status",
		qualify(s.schema, "{schema}.tasks"), w.String())

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, sql, w.args...)
	if err != nil {
		return nil, wrap("count", err)
	}
	defer rows.Close()
	counts := make(map[store.Status]int64)
	for rows.Next() {
		var status string
		var n int64
		if err := rows.Scan(&status, &n); err != nil {
			return nil, wrap("count", err)
		}
		counts[store.Status(status)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("count", err)
	}
	return counts, nil
}

// where builds the WHERE clause of a listing, with its arguments.
type where struct {
	conds []string
	args  []any
}

// add adds the condition cond, whose %s are placeholders for args.
func (w *where) add(cond string, args ...any) {
	ph := make([]any, len(args))
	for i, a := range args {
		w.args = append(w.args, a)
		ph[i] = "$" + strconv.Itoa(len(w.args))
	}
	w.conds = append(w.conds, fmt.Sprintf(cond, ph...))
}

// filter adds the conditions of f, and that the tasks have not expired
// by now.
func (w *where) filter(now time.Time, f store.Filter) {
	w.add("(expires_at IS NULL OR expires_at > %s)", now)
	switch len(f.Statuses) {
	case 0:
	case 1: // = rather than = ANY, so that tasks_status is read in order
		w.add("status = %s", string(f.Statuses[0]))
	default:
		statuses := make([]string, len(f.Statuses))
		for i, st := range f.Statuses {
			statuses[i] = string(st)
		}
		w.add("status = ANY(%s)", statuses)
	}
	if f.Kind != "" {
		w.add("kind = %s", f.Kind)
	}
	if f.Label != (store.Label{}) {
		w.add("labels @> ARRAY[%s::text]", f.Label.Key+"="+f.Label.Value)
	}
	if !f.CreatedAfter.IsZero() {
		w.add("created_ns >= %s", f.CreatedAfter.UnixNano())
	}
	if !f.CreatedBefore.IsZero() {
		w.add("created_ns < %s", f.CreatedBefore.UnixNano())
	}
	if !f.LeaseEndedBefore.IsZero() {
		ns := f.LeaseEndedBefore.UnixNano()
		w.add("lease_min <= %s AND lease_ns < %s", ns/int64(time.Minute), ns) // lease_min has the index
	}
}

func (w *where) String() string { return strings.Join(w.conds, " AND ") }
