package memstore

import (
	"math/rand/v2"

	"github.com/taskstatus/taskstatus/internal/pagetoken"
	"github.com/taskstatus/taskstatus/store"
)

// This file keeps the tasks of a Store in the order store.Lister returns
// them, newest first (by creation time, then id, both descending), and
// counts them. Each task is in two skip lists, whose links it holds in one
// array, those of the first list then those of the second: the list of
// all tasks and the list of its status. A page of tasks in some
// statuses is so read by merging a few lists from the page's cursor, in
// time that depends on the page's size, not on how many tasks the store
// holds.
//
// The index has a lock of its own, taken after a shard's. A write holds
// both while it changes a task's state, so that List, which holds only
// the index's, reads consistent states of every shard.

// maxLevel bounds the height of the skip lists: enough for far more tasks
// than memory holds, with a level for every fourth.
const maxLevel = 16

// The lists each task is in, by the index of its links.
const (
	allList    = 0
	statusList = 1
)

// skiplist is a skip list of entries, linked through their links of list
// li (see entry.links).
type skiplist struct {
	li   int
	head [maxLevel]*entry
}

// newer reports whether a comes before b: created later, or at the same
// time with a greater id.
func newer(a, b *entry) bool {
	if c := a.st.CreatedAt.Compare(b.st.CreatedAt); c != 0 {
		return c > 0
	}
	return a.st.ID > b.st.ID
}

// afterCursor reports whether e comes after the cursor (created, id).
func afterCursor(e *entry, created int64, id string) bool {
	if ns := e.st.CreatedAt.UnixNano(); ns != created {
		return ns < created
	}
	return e.st.ID < id
}

// randomHeight returns the height of a new node: 1, and one more with a
// chance of one in four each time.
func randomHeight() int {
	h := 1
	for h < maxLevel && rand.N(4) == 0 {
		h++
	}
	return h
}

// next returns the entry after node at level, or the first if node is nil.
func (l *skiplist) next(node *entry, level int) *entry {
	if node == nil {
		return l.head[level]
	}
	return node.links(l.li)[level]
}

// link makes e the entry after node at level, or the first if node is nil.
func (l *skiplist) link(node *entry, level int, e *entry) {
	if node == nil {
		l.head[level] = e
	} else {
		node.links(l.li)[level] = e
	}
}

// insert links e.
func (l *skiplist) insert(e *entry) {
	links := e.links(l.li)
	var node *entry // the last entry before e found so far; nil: the head
	for level := maxLevel - 1; level >= 0; level-- {
		for next := l.next(node, level); next != nil && newer(next, e); next = l.next(node, level) {
			node = next
		}
		if level < len(links) {
			links[level] = l.next(node, level)
			l.link(node, level, e)
		}
	}
}

// remove unlinks e.
func (l *skiplist) remove(e *entry) {
	links := e.links(l.li)
	var node *entry
	for level := maxLevel - 1; level >= 0; level-- {
		for next := l.next(node, level); next != nil && next != e && newer(next, e); next = l.next(node, level) {
			node = next
		}
		if level < len(links) && l.next(node, level) == e {
			l.link(node, level, links[level])
			links[level] = nil
		}
	}
}

// first returns the first entry after cur, or the first entry if cur is
// nil.
func (l *skiplist) first(cur *pagetoken.Cursor) *entry {
	var node *entry
	for level := maxLevel - 1; level >= 0 && cur != nil; level-- {
		for next := l.next(node, level); next != nil && !afterCursor(next, cur.Created, cur.ID); next = l.next(node, level) {
			node = next
		}
	}
	return l.next(node, 0)
}

// links returns e's links in list li, one per level of its height.
func (e *entry) links(li int) []*entry {
	h := len(e.next) / 2
	return e.next[li*h : (li+1)*h : (li+1)*h]
}

// index is the order and the counts of a Store's tasks.
type index struct {
	all      skiplist
	byStatus map[store.Status]*skiplist
	// counts counts the tasks by status, for each key of countKeys.
	counts map[string]map[store.Status]int64
}

func newIndex() *index {
	x := &index{all: skiplist{li: allList}, byStatus: make(map[store.Status]*skiplist),
		counts: make(map[string]map[store.Status]int64)}
	for _, s := range store.Statuses() {
		x.byStatus[s] = &skiplist{li: statusList}
	}
	return x
}

// add indexes e, a new entry whose state is set.
func (x *index) add(e *entry) {
	e.next = make([]*entry, 2*randomHeight())
	x.all.insert(e)
	x.byStatus[e.st.Status].insert(e)
	x.count(&e.st, 1)
}

// remove forgets e.
func (x *index) remove(e *entry) {
	x.all.remove(e)
	x.byStatus[e.st.Status].remove(e)
	x.count(&e.st, -1)
}

// set makes st, a new state of the same task, e's state.
func (x *index) set(e *entry, st store.State) {
	if st.Status == e.st.Status && st.Kind == e.st.Kind && labelsEqual(st.Labels, e.st.Labels) {
		e.st = st
		return
	}
	x.byStatus[e.st.Status].remove(e)
	x.count(&e.st, -1)
	e.st = st
	x.byStatus[e.st.Status].insert(e)
	x.count(&e.st, 1)
}

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// count adds n to the counts of st's status under each of its count keys.
func (x *index) count(st *store.State, n int64) {
	for _, key := range countKeys(st.Kind, st.Labels) {
		c := x.counts[key]
		if c == nil {
			c = make(map[store.Status]int64)
			x.counts[key] = c
		}
		if c[st.Status] += n; c[st.Status] == 0 {
			delete(c, st.Status)
			if len(c) == 0 {
				delete(x.counts, key)
			}
		}
	}
}

// countKey returns the key of the counts of the tasks of kind (or of any
// kind if "") with label (or any label if zero).
func countKey(kind string, label store.Label) string {
	switch {
	case kind == "" && label == (store.Label{}):
		return ""
	case label == (store.Label{}):
		return "k\x00" + kind
	case kind == "":
		return "l\x00" + label.Key + "\x00" + label.Value
	}
	return "kl\x00" + kind + "\x00" + label.Key + "\x00" + label.Value
}

// countKeys returns the keys of the counts a task of kind with labels is
// counted under.
func countKeys(kind string, labels map[string]string) []string {
	keys := []string{countKey("", store.Label{})}
	if kind != "" {
		keys = append(keys, countKey(kind, store.Label{}))
	}
	for k, v := range labels {
		l := store.Label{Key: k, Value: v}
		keys = append(keys, countKey("", l))
		if kind != "" {
			keys = append(keys, countKey(kind, l))
		}
	}
	return keys
}
