package memstore

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// An ended task is kept packed: its state encoded into one string by pack.
// Ended tasks are most of what a store holds (they stay until their TTL)
// and are seldom read. A string holds no pointers, so the garbage
// collector marks it without scanning it, where a State and its steps hold
// dozens of pointers each; a store of a million ended tasks then costs
// every collection a few million small objects, not a few million
// pointer-laden ones. An ended task, packed with its entry, takes about a
// third of the memory it did as a State.
//
// Unpacking allocates only the steps and the maps' values: every string of
// the State it returns is a substring of the packed one.
//
// The encoding is private to one process and never stored elsewhere, so it
// has no version: each field of State in declaration order, integers as
// varints, strings with their length first, the creation time as Unix
// seconds and nanoseconds (see putTime) and other times as their distance
// from it (see putTimeAfter), maps and steps with their count first.

// maxVarintLen is the longest encoding of an integer.
const maxVarintLen = binary.MaxVarintLen64

// pack appends st, packed, to buf.
func pack(buf []byte, st *store.State) []byte {
	p := packer{buf}
	p.putString(st.ID)
	p.putString(st.CorrelationID)
	p.putString(string(st.Status))
	base := st.CreatedAt
	p.putTime(base)
	p.putTimeAfter(st.StartedAt, base)
	p.putTimeAfter(st.UpdatedAt, base)
	p.putTimeAfter(st.CompletedAt, base)
	p.putTimeAfter(st.LeaseUntil, base)
	p.putString(st.ErrorMessage)
	p.putFields(st.ErrorDetails)
	p.putUint(uint64(len(st.Steps)))
	for i := range st.Steps {
		s := &st.Steps[i]
		p.putString(s.Name)
		p.putString(string(s.Status))
		p.putTimeAfter(s.StartedAt, base)
		p.putTimeAfter(s.CompletedAt, base)
		p.putString(s.Error)
		p.putInt(int64(s.Attempt))
	}
	p.putInt(st.Progress.Done)
	p.putInt(st.Progress.Total)
	p.putString(st.Progress.Message)
	p.putFields(st.Result)
	p.putInt(int64(st.Attempt))
	p.putInt(st.Version)
	return p.b
}

// packer appends a packed state to b.
type packer struct {
	b []byte
}

func (p *packer) putUint(v uint64) { p.b = binary.AppendUvarint(p.b, v) }

func (p *packer) putInt(v int64) { p.b = binary.AppendVarint(p.b, v) }

func (p *packer) putString(s string) {
	p.putUint(uint64(len(s)))
	p.b = append(p.b, s...)
}

// putTime packs the zero time as one byte, any other as its nanoseconds
// plus one, then its Unix seconds.
func (p *packer) putTime(t time.Time) {
	if t.IsZero() {
		p.putUint(0)
		return
	}
	p.putUint(uint64(t.Nanosecond()) + 1)
	p.putInt(t.Unix())
}

// putTimeAfter packs t as its distance from base, in one varint: 0 for
// the zero time, the distance zig-zagged plus 2 when base.Add gives t back,
// else 1 and then t as putTime does.
func (p *packer) putTimeAfter(t, base time.Time) {
	if t.IsZero() {
		p.putUint(0)
		return
	}
	if d := t.Sub(base); !base.IsZero() && base.Add(d).Equal(t) {
		p.putUint(uint64(d)<<1 ^ uint64(d>>63) + 2)
		return
	}
	p.putUint(1)
	p.putTime(t)
}

func (p *packer) putFields(m map[string]json.RawMessage) {
	p.putUint(uint64(len(m)))
	for k, v := range m {
		p.putString(k)
		p.putString(string(v))
	}
}

// unpack returns the state packed in s. An error, which wraps
// store.ErrCorrupt, means s was not made by pack.
func unpack(s string) (store.State, error) {
	u := unpacker{s: s}
	var st store.State
	st.ID = u.readString()
	st.CorrelationID = u.readString()
	st.Status = store.Status(u.readString())
	base := u.readTime()
	st.CreatedAt = base
	st.StartedAt = u.readTimeAfter(base)
	st.UpdatedAt = u.readTimeAfter(base)
	st.CompletedAt = u.readTimeAfter(base)
	st.LeaseUntil = u.readTimeAfter(base)
	st.ErrorMessage = u.readString()
	st.ErrorDetails = u.readFields()
	if n := u.readLen(); n > 0 {
		st.Steps = make([]store.Step, n)
		for i := range st.Steps {
			s := &st.Steps[i]
			s.Name = u.readString()
			s.Status = store.StepStatus(u.readString())
			s.StartedAt = u.readTimeAfter(base)
			s.CompletedAt = u.readTimeAfter(base)
			s.Error = u.readString()
			s.Attempt = u.readIntValue()
		}
	}
	st.Progress.Done = u.readInt()
	st.Progress.Total = u.readInt()
	st.Progress.Message = u.readString()
	st.Result = u.readFields()
	st.Attempt = u.readIntValue()
	st.Version = u.readInt()
	if u.err == nil && u.s != "" {
		u.fail("trailing bytes")
	}
	if u.err != nil {
		return store.State{}, u.err
	}
	return st, nil
}

// unpacker reads a packed state. After its first error, recorded in err,
// every read returns the zero value.
type unpacker struct {
	s   string
	err error
}

func (u *unpacker) fail(what string) {
	if u.err == nil {
		u.err = fmt.Errorf("memstore: packed state: %s: %w", what, store.ErrCorrupt)
	}
	u.s = ""
}

func (u *unpacker) readUint() uint64 {
	if s := u.s; s != "" && s[0] < 0x80 { // most values fit in one byte
		u.s = s[1:]
		return uint64(s[0])
	}
	return u.readLongUint()
}

func (u *unpacker) readLongUint() uint64 {
	var v uint64
	for i := 0; i < len(u.s) && i < maxVarintLen; i++ {
		b := u.s[i]
		if i == maxVarintLen-1 && b > 1 {
			break // more than 64 bits
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			u.s = u.s[i+1:]
			return v
		}
	}
	u.fail("bad varint")
	return 0
}

func (u *unpacker) readInt() int64 {
	x := u.readUint()
	return int64(x>>1) ^ -int64(x&1) // zig-zag, as binary.AppendVarint
}

// readIntValue reads an int64 that must fit an int.
func (u *unpacker) readIntValue() int {
	v := u.readInt()
	if v < math.MinInt || v > math.MaxInt {
		u.fail("int out of range")
		return 0
	}
	return int(v)
}

// readLen reads a length, which cannot exceed the bytes left.
func (u *unpacker) readLen() int {
	n := u.readUint()
	if n > uint64(len(u.s)) {
		u.fail("length beyond the end")
		return 0
	}
	return int(n)
}

func (u *unpacker) readString() string {
	n := u.readLen()
	s := u.s[:n]
	u.s = u.s[n:]
	return s
}

func (u *unpacker) readTime() time.Time {
	nsec := u.readUint()
	if nsec == 0 {
		return time.Time{}
	}
	if nsec > uint64(time.Second) {
		u.fail("nanoseconds out of range")
		return time.Time{}
	}
	return time.Unix(u.readInt(), int64(nsec-1)).UTC()
}

func (u *unpacker) readTimeAfter(base time.Time) time.Time {
	switch x := u.readUint(); x {
	case 0:
		return time.Time{}
	case 1:
		return u.readTime()
	default:
		x -= 2
		return base.Add(time.Duration(int64(x>>1) ^ -int64(x&1)))
	}
}

func (u *unpacker) readFields() map[string]json.RawMessage {
	n := u.readLen()
	if n == 0 {
		return nil
	}
	m := make(map[string]json.RawMessage, n)
	for range n {
		k := u.readString()
		m[k] = json.RawMessage(u.readString())
	}
	return m
}
