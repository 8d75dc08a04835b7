package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/internal/pagetoken"
	"github.com/taskstatus/taskstatus/store"
)

// List implements [store.Lister], mostly in two round trips (per node of
// a cluster): the newest entries of each status index the filter reads on
// every shard, a few more than the shard's share of a page, and the
// newest page of all those, read with one HGET a task (see readPage).
// When a shard may hold more of the page than it was asked for (the
// entries are unevenly spread, or the page is mostly gone), List asks
// again from where it is sure of the order. A task found in an index but
// gone by the time it is read (it expired, or was deleted) is left out of
// the page.
//
// A filter by status and creation time reads the indexes alone; one by
// kind, label or lease also reads the hash of each task it passes over, so
// that finding a rare kind among many tasks costs in proportion to the
// tasks passed over.
func (s *Store) List(ctx context.Context, f store.Filter, pageSize int, pageToken string) (store.Page, error) {
	if err := s.ready(ctx); err != nil {
		return store.Page{}, fmt.Errorf("redisstore: list: %w", err)
	}
	size, cur, err := pagetoken.Args(f, pageSize, pageToken)
	if err != nil {
		return store.Page{}, fmt.Errorf("redisstore: list: %w", err)
	}
	q := newQuery(f, size, cur)
	if len(q.statuses) == 0 {
		return store.Page{}, nil // a lease filter of terminal statuses finds nothing
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var page store.Page
	for {
		found, err := call(ctx, s.direct, func(ctx context.Context) (found, error) {
			return s.find(ctx, q)
		})
		if err != nil {
			return store.Page{}, wrap("list", err)
		}
		tasks, gone, err := s.readPage(ctx, f, found.entries)
		if err == nil && len(gone) > 0 {
			err = s.sweep(ctx, gone)
		}
		if err != nil {
			return store.Page{}, wrap("list", err)
		}
		page.Tasks = append(page.Tasks, tasks...)
		if !found.more {
			return page, nil
		}
		last := found.entries[len(found.entries)-1]
		if len(page.Tasks) == size {
			page.NextPageToken = pagetoken.Make(f, pagetoken.Cursor{Created: entryTime(last), ID: entryID(last)})
			return page, nil
		}
		q.max, q.size = "("+last, size-len(page.Tasks)
	}
}

// query is what listScript is asked on every shard.
type query struct {
	statuses []store.Status
	max, min string // bounds of ZREVRANGEBYLEX
	size     int
	kind     string
	needle   string // labelNeedle of the label; "" for none
	lease    string // the lease bound in microseconds, rounded up; "" for none
}

// newQuery returns the query of filter f for a page of size tasks after
// cursor cur (nil: from the newest).
func newQuery(f store.Filter, size int, cur *pagetoken.Cursor) query {
	q := query{statuses: f.Statuses, max: "+", min: "-", size: size, kind: f.Kind}
	if len(q.statuses) == 0 {
		q.statuses = store.Statuses()
	} else {
		q.statuses = slices.Compact(slices.Sorted(slices.Values(q.statuses)))
	}
	if !f.LeaseEndedBefore.IsZero() {
		q.statuses = slices.DeleteFunc(q.statuses, store.Status.Terminal)
		us := f.LeaseEndedBefore.UnixMicro()
		if f.LeaseEndedBefore.Nanosecond()%1000 != 0 {
			us++
		}
		q.lease = strconv.FormatInt(us, 10)
	}
	if f.Label != (store.Label{}) {
		q.needle = labelNeedle(f.Label)
	}
	if !f.CreatedBefore.IsZero() {
		q.max = "(" + entryBound(f.CreatedBefore)
	}
	if cur != nil {
		if e := indexEntry(time.Unix(0, cur.Created), cur.ID); q.max == "+" || e < q.max[1:] {
			q.max = "(" + e
		}
	}
	if !f.CreatedAfter.IsZero() {
		q.min = "[" + entryBound(f.CreatedAfter)
	}
	return q
}

// found is what find found: the newest entries, at most a page, newest
// first, and whether there may be more.
type found struct {
	entries []string
	more    bool
}

// find runs q on every shard and returns the newest entries it is sure
// of. Each index is asked for twice its share of the page (the page
// spread evenly over the shards), which is nearly always enough: entries
// are spread over the shards by a hash of their id. An index that
// answers as many as it was asked for may hold more, older than the last
// it answered: only the entries from the newest such last entry up are
// sure to be the newest, and find returns those, at most q.size.
func (s *Store) find(ctx context.Context, q query) (found, error) {
	limit := 2 * ((q.size + shards - 1) / shards)
	read := s.readIndexes
	if q.kind != "" || q.needle != "" || q.lease != "" {
		read = s.searchIndexes
	}
	lists, err := read(ctx, q, limit)
	if err != nil {
		return found{}, err
	}
	var entries []string
	more, sure := false, "" // sure: the newest last entry of an index that may hold more
	for _, inIndex := range lists {
		for _, e := range inIndex {
			if len(e) > entryTimeLen { // else not an entry: left out
				entries = append(entries, e)
			}
		}
		if len(inIndex) == limit && len(entries) > 0 {
			more, sure = true, max(sure, entries[len(entries)-1])
		}
	}
	slices.SortFunc(entries, func(a, b string) int { return strings.Compare(b, a) })
	if more {
		entries = entries[:sort.Search(len(entries), func(i int) bool { return entries[i] < sure })]
	}
	if len(entries) > q.size {
		entries, more = entries[:q.size], true
	}
	return found{entries, more}, nil
}

// readIndexes returns up to limit entries of each status index of q on
// every shard, newest first, with one ZRANGE BYLEX REV each, in one
// pipeline: a filter by status and creation time needs no script. (A
// script a shard, as searchIndexes runs, cost Redis about 12 µs a call
// against under 1 µs for the command, BenchmarkListPage at 20,000 tasks.)
func (s *Store) readIndexes(ctx context.Context, q query, limit int) ([][]string, error) {
	cmds := make([]*redis.StringSliceCmd, 0, shards*len(q.statuses))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range shards {
			for _, st := range q.statuses {
				cmds = append(cmds, p.ZRangeArgs(ctx, redis.ZRangeArgs{
					Key: s.keys.shard[n].index + string(st), Start: q.max, Stop: q.min,
					ByLex: true, Rev: true, Count: int64(limit),
				}))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	lists := make([][]string, len(cmds))
	for i, cmd := range cmds {
		lists[i] = cmd.Val()
	}
	return lists, nil
}

// searchIndexes returns up to limit entries of each status index of q on
// every shard whose tasks q's kind, label and lease match, newest first,
// with listScript on each shard, in one pipeline.
func (s *Store) searchIndexes(ctx context.Context, q query, limit int) ([][]string, error) {
	calls := make([]scriptCall, shards)
	for n := range shards {
		keys := make([]string, 0, len(q.statuses))
		for _, st := range q.statuses {
			keys = append(keys, s.keys.shard[n].index+string(st))
		}
		calls[n] = scriptCall{keys: keys, args: []any{
			q.max, q.min, limit, q.kind, q.needle, q.lease, s.keys.shard[n].tasks,
		}}
	}
	replies, err := s.runEach(ctx, listScript, calls)
	if err != nil {
		return nil, err
	}
	var lists [][]string
	for _, reply := range replies {
		inShard, ok := reply.([]any)
		if !ok {
			return nil, fmt.Errorf("%w: list script answered %T", store.ErrCorrupt, reply)
		}
		for _, l := range inShard {
			inIndex, ok := l.([]any)
			if !ok {
				return nil, fmt.Errorf("%w: list script answered a list of %T", store.ErrCorrupt, l)
			}
			list := make([]string, 0, len(inIndex))
			for _, e := range inIndex {
				if e, ok := e.(string); ok {
					list = append(list, e)
				}
			}
			lists = append(lists, list)
		}
	}
	return lists, nil
}

// readPage reads the tasks of entries and returns, in their order, those
// that f matches and that are still the tasks of their entries, and the
// shards of the entries whose tasks are gone. It reads each task's state
// field alone, with HGET: the fields Get checks it against (decodeState)
// guard a read of one task, and a page checks each state against its
// entry instead. Against HMGET of the four fields, that took a tenth off
// a page: BenchmarkListPage's p50 at 100,000 tasks 487 µs [439–539]
// against 548 µs [474–574], 5 rounds in turns. A task without a state
// field is kept in the compact form (see [WithCompactEnded]), or gone:
// those are read whole, with HGETALL, in one more round trip. A Store
// that writes the compact form reads every task of a page whole, at once.
func (s *Store) readPage(ctx context.Context, f store.Filter, entries []string) ([]store.State, []int, error) {
	read := make([]store.State, len(entries))
	var whole []int // the entries whose tasks are to be read whole
	if s.compact {  // most tasks listed have ended
		whole = make([]int, 0, len(entries))
		for i := range entries {
			whole = append(whole, i)
		}
	} else {
		var err error
		if whole, err = s.readStates(ctx, entries, read); err != nil {
			return nil, nil, err
		}
	}
	gone, err := s.readWhole(ctx, entries, whole, read)
	if err != nil {
		return nil, nil, err
	}
	tasks := make([]store.State, 0, len(entries))
	for i, e := range entries {
		if st := read[i]; st.ID != "" && indexEntry(st.CreatedAt, st.ID) == e && f.Match(st) {
			tasks = append(tasks, st)
		}
	}
	return tasks, gone, nil
}

// readStates reads into read the states of the tasks of entries, from
// their state fields, and returns the entries whose tasks have none.
// Those it cannot decode it logs and leaves zero.
func (s *Store) readStates(ctx context.Context, entries []string, read []store.State) ([]int, error) {
	raws, err := pipeline(ctx, s, entries, func(ctx context.Context, p redis.Pipeliner, key string) *redis.StringCmd {
		return p.HGet(ctx, key, fieldState)
	})
	if err != nil && !errors.Is(err, redis.Nil) { // a task without the field answers nil
		return nil, err
	}
	var none []int
	for i, e := range entries {
		raw, err := raws[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			none = append(none, i)
			continue
		case err != nil:
			return nil, err
		}
		if read[i], err = decodeStateField(&s.decoded, entryID(e), raw); err != nil {
			s.logger.WarnContext(ctx, "redisstore: list: a task cannot be read; it is left out", "task_id", entryID(e), "err", err)
		}
	}
	return none, nil
}

// readWhole reads into read the states of the tasks of the entries
// numbered which, from their whole hashes, and returns the shards of the
// entries whose tasks are gone. Those it cannot decode it logs and leaves
// zero.
func (s *Store) readWhole(ctx context.Context, entries []string, which []int, read []store.State) ([]int, error) {
	if len(which) == 0 {
		return nil, nil
	}
	some := make([]string, len(which))
	for j, i := range which {
		some[j] = entries[i]
	}
	hashes, err := pipeline(ctx, s, some, func(ctx context.Context, p redis.Pipeliner, key string) *redis.MapStringStringCmd {
		return p.HGetAll(ctx, key)
	})
	if err != nil {
		return nil, err
	}
	var gone []int
	for j, i := range which {
		id := entryID(entries[i])
		fields, err := hashes[j].Result()
		switch {
		case err != nil:
			return nil, err
		case len(fields) == 0: // expired or deleted, and not yet taken out of the indexes
			if n := shardOf(id); !slices.Contains(gone, n) {
				gone = append(gone, n)
			}
			continue
		}
		if read[i], err = decodeState(&s.decoded, id, fields); err != nil {
			s.logger.WarnContext(ctx, "redisstore: list: a task cannot be read; it is left out", "task_id", id, "err", err)
		}
	}
	return gone, nil
}

// pipeline sends, in one round trip (per node of a cluster), the command
// cmd makes of the hash of the task of each of entries, and returns them.
func pipeline[C redis.Cmder](ctx context.Context, s *Store, entries []string, cmd func(context.Context, redis.Pipeliner, string) C) ([]C, error) {
	return call(ctx, s.direct, func(ctx context.Context) ([]C, error) {
		cmds := make([]C, len(entries))
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, e := range entries {
				cmds[i] = cmd(ctx, p, s.keys.task(entryID(e)))
			}
			return nil
		})
		return cmds, err
	})
}

// sweep runs sweepScript on each of shards, in one pipeline.
func (s *Store) sweep(ctx context.Context, shards []int) error {
	calls := make([]scriptCall, len(shards))
	for i, n := range shards {
		sk := &s.keys.shard[n]
		calls[i] = scriptCall{keys: []string{sk.expiry}, args: []any{sk.index, sk.tasks}}
	}
	_, err := call(ctx, s.direct, func(ctx context.Context) ([]any, error) {
		return s.runEach(ctx, sweepScript, calls)
	})
	return err
}

// Count implements [store.Lister] with countScript on every shard, in one
// round trip (per node of a cluster): the size of each status index, or
// the counters the write script keeps by kind and label.
func (s *Store) Count(ctx context.Context, f store.Filter) (map[store.Status]int64, error) {
	if err := s.ready(ctx); err != nil {
		return nil, fmt.Errorf("redisstore: count: %w", err)
	}
	if err := pagetoken.CountArgs(f); err != nil {
		return nil, fmt.Errorf("redisstore: count: %w", err)
	}
	var label string
	if f.Label != (store.Label{}) {
		label = f.Label.Key + "=" + f.Label.Value
	}
	calls := make([]scriptCall, shards)
	for n := range shards {
		sk := &s.keys.shard[n]
		calls[n] = scriptCall{keys: []string{sk.expiry}, args: []any{f.Kind, label, sk.tasks, sk.index}}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	replies, err := call(ctx, s.direct, func(ctx context.Context) ([]any, error) {
		return s.runEach(ctx, countScript, calls)
	})
	if err != nil {
		return nil, wrap("count", err)
	}
	statuses := store.Statuses()
	counts := make(map[store.Status]int64)
	for _, reply := range replies {
		ns, ok := reply.([]any)
		if !ok || len(ns) != len(statuses) {
			return nil, fmt.Errorf("redisstore: count: %w: count script answered %v", store.ErrCorrupt, reply)
		}
		for i, n := range ns {
			if n, ok := n.(int64); ok && n > 0 {
				counts[statuses[i]] += n
			}
		}
	}
	return counts, nil
}

// scriptCall is one call of a script: its keys and arguments.
type scriptCall struct {
	keys []string
	args []any
}

// runEach runs script once for each call, in one pipeline (one round trip
// per node of a cluster), and returns their replies in order, or the first
// error of a call. The calls that find the script missing from a server's
// cache are sent again with the script's text, which caches it.
func (s *Store) runEach(ctx context.Context, script *redis.Script, calls []scriptCall) ([]any, error) {
	batch := make([]*queued, len(calls))
	for i, c := range calls {
		batch[i] = &queued{ctx: ctx, script: script, keys: c.keys, args: c.args}
	}
	s.batch.send(ctx, batch)
	replies := make([]any, len(batch))
	for i, q := range batch {
		cmd := q.cmd.(*redis.Cmd)
		if err := cmd.Err(); err != nil {
			return nil, err
		}
		replies[i] = cmd.Val()
	}
	return replies, nil
}

// entryTime returns the creation time, in nanoseconds since 1970, at the
// start of index entry e.
func entryTime(e string) int64 {
	return int64(binary.BigEndian.Uint64([]byte(e[:entryTimeLen])) ^ (1 << 63))
}
