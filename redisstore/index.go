package redisstore

import (
	"encoding/binary"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// The indexes of a shard (see keys.go) are sorted sets:
//
//   - one per status, "<prefix>{tN}i:<status>": the shard's tasks in that
//     status, every score 0, each member the task's index entry (below),
//     so that the set is ordered by creation time, then id, and a range of
//     creation times is a range of members (ZRANGEBYLEX);
//   - the expiry index, "<prefix>{tN}i:expiry": the entries of the shard's
//     tasks that have a time to live, scored by when they expire, in
//     milliseconds of the server's clock, so that a script finds the
//     expired ones and removes them from the status indexes.
//
// A task's hash keeps what the scripts need besides in one field, index
// (see indexField), so that a write knows which entry to move, and a
// listing checks a task's kind, label and lease without decoding its JSON.
// One field, not five: a task's hash is a hash table (its state is longer
// than Redis keeps in a listpack), where each field costs about 55 bytes
// besides its value.

// entryTimeLen is the length of the time at the start of an index entry.
const entryTimeLen = 8

// indexEntry returns the index entry of the task created at created with
// id id: the creation time in nanoseconds since 1970, its sign bit
// flipped, big-endian (so that byte order is time order), then the id.
// Times outside the years 1678 to 2262, which nanoseconds cannot hold, are
// clamped to them: tasks created then are ordered by id alone.
func indexEntry(created time.Time, id string) string {
	b := make([]byte, entryTimeLen, entryTimeLen+len(id))
	binary.BigEndian.PutUint64(b, uint64(unixNano(created))^(1<<63))
	return string(append(b, id...))
}

// entryBound returns the smallest entry of the tasks created at t or
// later.
func entryBound(t time.Time) string {
	return indexEntry(t, "")
}

// unixNano returns t in nanoseconds since 1970, clamped to what an int64
// holds.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, -1<<63)):
		return -1 << 63
	case t.After(time.Unix(0, 1<<63-1)):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// entryID returns the task id of index entry e.
func entryID(e string) string {
	return e[min(entryTimeLen, len(e)):]
}

// indexField returns the index field of st: the 8 bytes of its creation
// time, as its index entry starts, then its status, kind and lease (as
// leaseField gives it) and its labels (as labelsField gives them),
// separated by newlines, which none of them holds.
func indexField(st store.State) string {
	return indexEntry(st.CreatedAt, "") + string(st.Status) + "\n" + st.Kind + "\n" +
		leaseField(st.LeaseUntil) + "\n" + labelsField(st.Labels)
}

// labelsField returns the labels as the index field keeps them: each
// "key=value" followed by a zero byte, after a zero byte, in key order;
// "" for none. Keys have no '=' and values no zero byte (see
// store.ValidateLabel), so a listing finds a label with a plain search
// for labelNeedle.
func labelsField(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte(0)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(labelNeedle(store.Label{Key: k, Value: labels[k]})[1:])
	}
	return b.String()
}

// labelNeedle returns what the labels of a task with label l hold:
// "\x00key=value\x00".
func labelNeedle(l store.Label) string {
	return "\x00" + l.Key + "=" + l.Value + "\x00"
}

// leaseField returns the end of a lease as the index field keeps it:
// microseconds since 1970, in decimal, which a Lua number holds exactly;
// "" for none.
func leaseField(lease time.Time) string {
	if lease.IsZero() {
		return ""
	}
	return strconv.FormatInt(lease.UnixMicro(), 10)
}
