package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskstatus/taskstatus/store"
)

// The pause between attempts after a failure grows from minBackoff to
// maxBackoff.
const (
	minBackoff = 10 * time.Millisecond
	maxBackoff = 500 * time.Millisecond
)

// read is the reader goroutine of the fan-out: until f closes, it reads
// the tasks of the dirty topics, all in one round trip, and settles each
// read; reads that fail are tried again after a pause. A topic's first
// read waits for its subscription's confirmation (subscribe, then read);
// the later ones need not, so that a watch goes on, reading at each check,
// while its connection is replaced. At each health interval the reader
// checks every watched task (check), and it ends the watches of the tasks
// it could neither read nor check for too long (endStale).
func (f *fanout) read() {
	defer close(f.done)
	tick := time.NewTicker(f.s.health)
	defer tick.Stop()
	stale := time.NewTimer(f.staleAfter())
	defer stale.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
			f.check()
		case <-stale.C:
			// Reads and checks only make topics fresher, and a topic is
			// first known fresh: the timer is never late, at worst early.
			stale.Reset(f.endStale())
		}
		for backoff := minBackoff; f.readDirty(); backoff = min(2*backoff, maxBackoff) {
			if !sleep(f.ctx, min(backoff, f.endStale())) {
				return
			}
		}
	}
}

// staleAfter is how long a watched task may go neither read nor checked
// before its watches end: the health interval plus the store's timeout.
func (f *fanout) staleAfter() time.Duration {
	return f.s.health + f.s.timeout
}

// readDirty reads the tasks of the dirty topics that may be read, and
// settles each read. It reports whether a read failed and is to be tried
// again.
func (f *fanout) readDirty() (retry bool) {
	var topics []*topic
	f.mu.Lock()
	waiting := f.dirty[:0] // for their subscription's confirmation
	for _, t := range f.dirty {
		switch {
		case f.topics[t.channel] != t: // dropped with its last watcher
		case t.known || f.hub.confirmed(t.channel):
			t.dirty = false
			topics = append(topics, t)
		default:
			waiting = append(waiting, t)
		}
	}
	clear(f.dirty[len(waiting):])
	f.dirty = waiting
	f.mu.Unlock()
	if len(topics) == 0 {
		return false
	}

	start := time.Now()
	reads := f.s.readTasks(f.ctx, topics)

	f.mu.Lock()
	defer f.mu.Unlock()
	for i, t := range topics {
		if f.topics[t.channel] == t && f.settle(t, start, reads[i]) {
			retry = true
		}
	}
	return retry
}

// check compares every watched task that has been read with its last
// read, in one round trip: a task found as read is fresh; one that
// changed, disappeared, or could not be checked is marked dirty.
// Notifications can be lost (a connection that went quiet, a cluster bus
// link that failed), and expiry and FLUSHDB publish nothing: the check
// bounds how long either goes unseen to one health interval.
func (f *fanout) check() {
	var topics []*topic
	f.mu.Lock()
	for _, t := range f.topics {
		if t.known {
			topics = append(topics, t)
		}
	}
	f.mu.Unlock()
	if len(topics) == 0 {
		return
	}

	start := time.Now()
	probes := f.s.probeTasks(f.ctx, topics)

	f.mu.Lock()
	defer f.mu.Unlock()
	for i, t := range topics {
		switch p := probes[i]; {
		case f.topics[t.channel] != t:
		case p.err == nil && p.announced == t.announced && p.incarnation == t.incarnation:
			t.fresh = start
		default:
			f.markDirty(t)
		}
	}
}

// endStale ends the watches of the topics whose task has been neither
// read nor checked for longer than staleAfter: their watchers cannot be
// told that the state they have is still the task's. It returns how long
// until the next topic would be stale.
func (f *fanout) endStale() time.Duration {
	limit := f.staleAfter()
	next := limit
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.topics {
		if !t.known {
			continue
		}
		age := now.Sub(t.fresh)
		if age <= limit {
			next = min(next, limit-age)
			continue
		}
		err := fmt.Errorf("redisstore: watch %q: %w: not read for %v", t.id, store.ErrUnavailable, age.Round(time.Millisecond))
		for w := range t.watchers {
			f.end(w, err)
		}
	}
	return next
}

// taskRead is the outcome of a read of a task for its watchers: its state
// and the version last announced, or why there are none.
type taskRead struct {
	st        store.State
	announced int64
	err       error
}

// readTasks reads the tasks of topics in one round trip (one per node of
// a cluster), within the store's timeout.
func (s *Store) readTasks(ctx context.Context, topics []*topic) []taskRead {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmds, err := call(ctx, false, func(ctx context.Context) ([]*redis.MapStringStringCmd, error) {
		cmds := make([]*redis.MapStringStringCmd, len(topics))
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, t := range topics {
				cmds[i] = p.HGetAll(ctx, s.keys.task(t.id))
			}
			return nil
		})
		return cmds, err
	})
	reads := make([]taskRead, len(topics))
	for i, t := range topics {
		var fields map[string]string
		if cmds != nil { // else the round trip failed, or was left to finish alone
			fields, err = cmds[i].Result()
		}
		reads[i] = s.decodeRead(t.id, fields, err)
	}
	return reads
}

// decodeRead returns the outcome of a read of task id that returned the
// fields of its hash, or failed with err.
func (s *Store) decodeRead(id string, fields map[string]string, err error) taskRead {
	op := fmt.Sprintf("watch %q", id)
	if err != nil {
		return taskRead{err: wrap(op, err)}
	}
	if len(fields) == 0 {
		return taskRead{err: fmt.Errorf("redisstore: %s: %w", op, store.ErrNotFound)}
	}
	st, err := decodeState(&s.decoded, id, fields)
	if err == nil {
		var announced int64
		if announced, err = announcedVersion(fields, st.Version); err == nil {
			return taskRead{st: st, announced: announced}
		}
	}
	return taskRead{err: fmt.Errorf("redisstore: %s: %w", op, err)}
}

// taskProbe is what check learns of a watched task: the version last
// announced and the incarnation, or the error of the check. A task that
// does not exist has announced version -1.
type taskProbe struct {
	announced   int64
	incarnation string
	err         error
}

// probeTasks reads the version last announced and the incarnation of the
// tasks of topics in one round trip (one per node of a cluster), within
// the store's timeout.
func (s *Store) probeTasks(ctx context.Context, topics []*topic) []taskProbe {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmds, err := call(ctx, false, func(ctx context.Context) ([]*redis.SliceCmd, error) {
		cmds := make([]*redis.SliceCmd, len(topics))
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, t := range topics {
				cmds[i] = p.HMGet(ctx, s.keys.task(t.id), fieldVersion, fieldIncarnation, fieldAnnounced)
			}
			return nil
		})
		return cmds, err
	})
	probes := make([]taskProbe, len(topics))
	for i := range topics {
		var vals []any
		if cmds != nil { // else the round trip failed, or was left to finish alone
			vals, err = cmds[i].Result()
		}
		if err != nil {
			probes[i].err = err
			continue
		}
		probes[i] = probe(vals)
	}
	return probes
}

// probe returns what the fields version, inc and announced of a task's
// hash, as HMGET returns them, tell a check. Fields it cannot parse are
// left for the read that follows to report.
func probe(vals []any) taskProbe {
	version, _ := vals[0].(string)
	inc, _ := vals[1].(string)
	announced, ok := vals[2].(string)
	if !ok {
		announced = version // a hash of an earlier release, or none
	}
	n, err := strconv.ParseInt(announced, 10, 64)
	switch {
	case version == "":
		n = -1
	case err != nil:
		return taskProbe{err: err}
	}
	return taskProbe{announced: n, incarnation: inc}
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
