package statejson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/taskstatus/taskstatus/store"
)

// maxDepth is how deeply arrays and objects may nest in the JSON of a
// state, as in encoding/json.
const maxDepth = 10000

// A decoder reads the JSON of a store.State, without reflection, as
// encoding/json's Unmarshal reads it into one (FuzzDecode compares them).
// Any error refuses the whole data, so the first one met is returned,
// whether Unmarshal would have found another first or not:
//
//   - The data is one JSON value (RFC 8259, nested at most maxDepth deep)
//     between optional white space. Strings may hold invalid UTF-8 and lone
//     surrogate escapes, which read as U+FFFD.
//   - A key names a field if it equals the field's name case-insensitively
//     (under Unicode simple folding); a key that names none is skipped.
//     Of keys that name the same field, the last one wins, and decodes
//     into what the earlier ones left: an object into the struct, its
//     keys added to a map, an array's elements into those of the slice,
//     even those an earlier, longer array left beyond the slice's length.
//   - Null leaves a string, number, time or struct unchanged, and makes a
//     map or slice nil; a value of any other JSON type than the field's is
//     refused. A map's value that is null is "" (a label) or null (a raw
//     value), and an empty array makes an empty, non-nil slice.
//   - An integer is a JSON number without fraction or exponent, in range.
//     A time is a JSON string, read by [time.Time.UnmarshalJSON] from its
//     bytes as written (escapes included).
//   - A raw value (error details, results) keeps its bytes as written.
//
// Each struct is read by object, which reads its members, and a method
// per struct (stateField, stepField ...) that decodes a member's value
// into the field its key names; array and members read slices and maps.
type decoder struct {
	data  []byte
	off   int    // the next byte to read
	depth int    // the arrays and objects open at off
	buf   []byte // the last string read that had escapes or invalid UTF-8
	fold  []byte // the last key folded by name
}

// decode returns the state whose JSON is data, as json.Unmarshal would
// fill a zero store.State, or the first error it meets.
func decode(data []byte) (store.State, error) {
	d := decoder{data: data}
	var st store.State
	d.space()
	if err := d.state(&st); err != nil {
		return store.State{}, err
	}
	d.space()
	if d.off < len(d.data) {
		return store.State{}, d.syntaxError()
	}
	return st, nil
}

// state decodes an object into *st.
func (d *decoder) state(st *store.State) error {
	return d.object("a state", func(name []byte) error { return d.stateField(st, name) })
}

// stateField decodes the value at d.off into the field of a state that
// name names, from ID to ErrorDetails, or else by stateLaterField.
func (d *decoder) stateField(st *store.State, name []byte) error {
	switch string(name) {
	case "id":
		return text(d, &st.ID)
	case "incarnation":
		return text(d, &st.Incarnation)
	case "correlation_id":
		return text(d, &st.CorrelationID)
	case "status":
		return status(d, &st.Status)
	case "kind":
		return text(d, &st.Kind)
	case "labels":
		return members(d, &st.Labels, "labels", d.label)
	case "created_at":
		return d.time(&st.CreatedAt)
	case "started_at":
		return d.time(&st.StartedAt)
	case "updated_at":
		return d.time(&st.UpdatedAt)
	case "completed_at":
		return d.time(&st.CompletedAt)
	case "lease_until":
		return d.time(&st.LeaseUntil)
	case "error_message":
		return text(d, &st.ErrorMessage)
	case "error_details":
		return members(d, &st.ErrorDetails, "raw values", d.raw)
	}
	return d.stateLaterField(st, name)
}

// stateLaterField decodes the value at d.off into the field of a state
// that name names, from Steps to Version, or skips it if name names none.
func (d *decoder) stateLaterField(st *store.State, name []byte) error {
	switch string(name) {
	case "steps":
		return array(d, &st.Steps, d.step)
	case "progress":
		return d.progress(&st.Progress)
	case "result":
		return members(d, &st.Result, "raw values", d.raw)
	case "cancel_requested_at":
		return d.time(&st.CancelRequestedAt)
	case "cancel_reason":
		return text(d, &st.CancelReason)
	case "attempt":
		return integer(d, &st.Attempt)
	case "previous_attempts":
		return array(d, &st.PreviousAttempts, d.attempt)
	case "version":
		return integer(d, &st.Version)
	}
	return d.skip()
}

// step decodes an object into *sp.
func (d *decoder) step(sp *store.Step) error {
	return d.object("a step", func(name []byte) error { return d.stepField(sp, name) })
}

// stepField decodes the value at d.off into the field of a step that name
// names, or skips it if name names none.
func (d *decoder) stepField(sp *store.Step, name []byte) error {
	switch string(name) {
	case "name":
		return text(d, &sp.Name)
	case "status":
		return status(d, &sp.Status)
	case "started_at":
		return d.time(&sp.StartedAt)
	case "completed_at":
		return d.time(&sp.CompletedAt)
	case "error":
		return text(d, &sp.Error)
	case "attempt":
		return integer(d, &sp.Attempt)
	case "progress":
		return d.progress(&sp.Progress)
	case "sub_steps":
		return array(d, &sp.SubSteps, d.subStep)
	}
	return d.skip()
}

// subStep decodes an object into *sub.
func (d *decoder) subStep(sub *store.SubStep) error {
	return d.object("a sub-step", func(name []byte) error { return d.subStepField(sub, name) })
}

// subStepField decodes the value at d.off into the field of a sub-step
// that name names, or skips it if name names none.
func (d *decoder) subStepField(sub *store.SubStep, name []byte) error {
	switch string(name) {
	case "name":
		return text(d, &sub.Name)
	case "status":
		return status(d, &sub.Status)
	case "started_at":
		return d.time(&sub.StartedAt)
	case "completed_at":
		return d.time(&sub.CompletedAt)
	case "error":
		return text(d, &sub.Error)
	}
	return d.skip()
}

// attempt decodes an object into *a.
func (d *decoder) attempt(a *store.Attempt) error {
	return d.object("an attempt", func(name []byte) error { return d.attemptField(a, name) })
}

// attemptField decodes the value at d.off into the field of an attempt
// that name names, or skips it if name names none.
func (d *decoder) attemptField(a *store.Attempt, name []byte) error {
	switch string(name) {
	case "attempt":
		return integer(d, &a.Attempt)
	case "status":
		return status(d, &a.Status)
	case "started_at":
		return d.time(&a.StartedAt)
	case "completed_at":
		return d.time(&a.CompletedAt)
	case "error_message":
		return text(d, &a.ErrorMessage)
	case "error_details":
		return members(d, &a.ErrorDetails, "raw values", d.raw)
	}
	return d.skip()
}

// progress decodes an object into *p.
func (d *decoder) progress(p *store.Progress) error {
	return d.object("a progress", func(name []byte) error { return d.progressField(p, name) })
}

// progressField decodes the value at d.off into the field of a progress
// that name names, or skips it if name names none.
func (d *decoder) progressField(p *store.Progress, name []byte) error {
	switch string(name) {
	case "done":
		return integer(d, &p.Done)
	case "total":
		return integer(d, &p.Total)
	case "message":
		return text(d, &p.Message)
	}
	return d.skip()
}

// object decodes an object into a struct that typ (such as "a step")
// names: field decodes each member's value into the field that the
// member's key names (see decoder.name), or skips it. Null leaves the
// struct as it is.
//
// field is a closure over the struct, not a function taking the struct
// and d: what is passed to a function value escapes to the heap, and
// BenchmarkDecode/finished then made 30 allocations instead of 24.
func (d *decoder) object(typ string, field func(name []byte) error) error {
	if ok, err := d.enterObject(typ); !ok {
		return err
	}
	for first := true; ; first = false {
		key, ok, err := d.member(first)
		if !ok {
			return err
		}
		if err := field(d.name(key)); err != nil {
			return err
		}
	}
}

// enterObject consumes the '{' of the object at d.off and reports true.
// It reports false with a nil error for null, which it consumes, and with
// an error for anything else, which typ (such as "a step") cannot be.
func (d *decoder) enterObject(typ string) (bool, error) {
	switch d.peek() {
	case '{':
		return true, d.enter()
	case 'n':
		return false, d.literal("null")
	}
	return false, d.mismatch(typ)
}

// members decodes an object into the map *m, of typ (such as "labels"),
// adding its members to the entries *m has, each with the value that
// value returns (it returns it rather than filling a pointer, for the
// reason object gives). Null makes *m nil.
func members[V any](d *decoder, m *map[string]V, typ string, value func() (V, error)) error {
	switch d.peek() {
	case '{':
	case 'n':
		*m = nil
		return d.literal("null")
	default:
		return d.mismatch(typ)
	}
	if err := d.enter(); err != nil {
		return err
	}
	if *m == nil {
		*m = make(map[string]V)
	}
	for first := true; ; first = false {
		key, ok, err := d.member(first)
		if !ok {
			return err
		}
		k := string(key) // before reading the value overwrites d.buf
		v, err := value()
		if err != nil {
			return err
		}
		(*m)[k] = v
	}
}

// label returns the string at d.off, the value of a label: "" for null.
func (d *decoder) label() (string, error) {
	var s string
	err := text(d, &s)
	return s, err
}

// raw returns the value at d.off, as its bytes are written.
func (d *decoder) raw() (json.RawMessage, error) {
	start := d.off
	if err := d.skip(); err != nil {
		return nil, err
	}
	return bytes.Clone(d.data[start:d.off]), nil
}

// array decodes an array into *s, each element by elem, into the element
// of *s at its index (see extend). Null makes *s nil.
func array[E any](d *decoder, s *[]E, elem func(*E) error) error {
	if ok, err := enterList(d, s); !ok {
		return err
	}
	v, n := *s, 0
	for ; ; n++ {
		if more, err := d.element(n == 0); !more {
			if err != nil {
				return err
			}
			break
		}
		v = extend(v, n)
		if err := elem(&v[n]); err != nil {
			return err
		}
	}
	*s = shorten(v, n)
	return nil
}

// enterList consumes the '[' of the array at d.off, into which *s
// decodes, and reports true. It reports false with a nil error for null,
// which it consumes and which makes *s nil, and with an error for anything
// else.
func enterList[E any](d *decoder, s *[]E) (bool, error) {
	switch d.peek() {
	case '[':
		return true, d.enter()
	case 'n':
		*s = nil
		return false, d.literal("null")
	}
	return false, d.mismatch("an array")
}

// extend returns v with element i, which decodes next: v[i] if v has it
// already, or else what an earlier, longer array left there, within v's
// capacity, or else a zero element.
func extend[E any](v []E, i int) []E {
	switch {
	case i < len(v):
		return v
	case i == cap(v):
		// Arrays come by the handful (steps): growing by at least 4
		// allocates 5 elements twice (4, 8), not four times (1, 2, 4, 8).
		v = slices.Grow(v, 4)
	}
	return v[:i+1]
}

// shorten returns v after an array of n elements decoded into it: its
// first n elements, or an empty slice for an empty array.
func shorten[E any](v []E, n int) []E {
	if n == 0 {
		return []E{}
	}
	return v[:n]
}

// text decodes a string into *p.
func text[T ~string](d *decoder, p *T) error {
	switch d.peek() {
	case '"':
		s, err := d.str()
		if err != nil {
			return err
		}
		*p = T(s)
		return nil
	case 'n':
		return d.literal("null")
	}
	return d.mismatch("a string")
}

// status decodes a string into *p, without allocating the name of a
// status: six of the allocations of BenchmarkDecode/finished.
func status[T ~string](d *decoder, p *T) error {
	if d.peek() != '"' {
		return text(d, p)
	}
	s, err := d.str()
	if err != nil {
		return err
	}
	switch string(s) {
	case "pending":
		*p = "pending"
	case "running":
		*p = "running"
	case "success":
		*p = "success"
	case "failed":
		*p = "failed"
	case "canceled":
		*p = "canceled"
	case "skipped":
		*p = "skipped"
	default:
		*p = T(s)
	}
	return nil
}

// integer decodes a number into *p: an integer in the range of T.
func integer[T int | int64](d *decoder, p *T) error {
	switch c := d.peek(); {
	case c == 'n':
		return d.literal("null")
	case c != '-' && (c < '0' || c > '9'):
		return d.mismatch("an integer")
	}
	start := d.off
	tok, isInt, err := d.number()
	if err != nil {
		return err
	}
	n, ok := parseInt(tok)
	if !isInt || !ok || int64(T(n)) != n {
		return fmt.Errorf("number %s at offset %d is not an integer of 64 bits", tok, start)
	}
	*p = T(n)
	return nil
}

// parseInt returns the value of tok, an integer as JSON writes it, and
// whether it fits in an int64.
func parseInt(tok []byte) (int64, bool) {
	neg := tok[0] == '-'
	if neg {
		tok = tok[1:]
	}
	if len(tok) > 19 { // JSON has no leading zeros
		return 0, false
	}
	var n uint64
	for _, c := range tok {
		n = n*10 + uint64(c-'0')
	}
	switch {
	case neg && n <= 1<<63:
		return -int64(n), true // -(1<<63) wraps to itself
	case !neg && n < 1<<63:
		return int64(n), true
	}
	return 0, false
}

// time decodes a string into *t by [time.Time.UnmarshalJSON].
func (d *decoder) time(t *time.Time) error {
	switch d.peek() {
	case '"':
	case 'n':
		return d.literal("null")
	default:
		return d.mismatch("a time")
	}
	start := d.off
	if _, err := d.str(); err != nil {
		return err
	}
	if err := t.UnmarshalJSON(d.data[start:d.off]); err != nil {
		return fmt.Errorf("offset %d: %w", start, err)
	}
	return nil
}

// skip consumes the value at d.off.
func (d *decoder) skip() error {
	switch c := d.peek(); {
	case c == '{':
		return d.skipObject()
	case c == '[':
		return d.skipArray()
	case c == '"':
		_, err := d.str()
		return err
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		_, _, err := d.number()
		return err
	}
	return d.syntaxError()
}

// skipObject consumes the object at d.off.
func (d *decoder) skipObject() error {
	if err := d.enter(); err != nil {
		return err
	}
	for first := true; ; first = false {
		if _, ok, err := d.member(first); !ok {
			return err
		}
		if err := d.skip(); err != nil {
			return err
		}
	}
}

// skipArray consumes the array at d.off.
func (d *decoder) skipArray() error {
	if err := d.enter(); err != nil {
		return err
	}
	for first := true; ; first = false {
		if more, err := d.element(first); !more {
			return err
		}
		if err := d.skip(); err != nil {
			return err
		}
	}
}

// enter consumes the '{' or '[' at d.off.
func (d *decoder) enter() error {
	d.off++
	d.depth++
	if d.depth > maxDepth {
		return fmt.Errorf("JSON nested more than %d deep at offset %d", maxDepth, d.off-1)
	}
	return nil
}

// member reads the key of the next member of the object open at d.off,
// and the colon after it, and reports true, leaving d.off at the value.
// At the end of the object, which it consumes, it reports false. first
// says whether the object's first member is next. The key is valid until
// the next string is read.
func (d *decoder) member(first bool) (key []byte, ok bool, err error) {
	d.space()
	switch c := d.peek(); {
	case c == '}':
		d.off++
		d.depth--
		return nil, false, nil
	case c == ',' && !first:
		d.off++
		d.space()
	case !first:
		return nil, false, d.syntaxError()
	}
	if d.peek() != '"' {
		return nil, false, d.syntaxError()
	}
	if key, err = d.str(); err != nil {
		return nil, false, err
	}
	d.space()
	if d.peek() != ':' {
		return nil, false, d.syntaxError()
	}
	d.off++
	d.space()
	return key, true, nil
}

// element reports whether the array open at d.off has another element,
// leaving d.off at it. At the end of the array, which it consumes, it
// reports false. first says whether the array's first element is next.
func (d *decoder) element(first bool) (bool, error) {
	d.space()
	switch c := d.peek(); {
	case c == ']':
		d.off++
		d.depth--
		return false, nil
	case first:
		return true, nil
	case c == ',':
		d.off++
		d.space()
		return true, nil
	}
	return false, d.syntaxError()
}

// name returns the field name that key stands for. encoding/json takes a
// key for a field's name if they are equal under Unicode simple case
// folding, and every field's name is lower-case ASCII, so: key itself if
// it is in lower case, else key folded and in lower case if that is
// ASCII, else nil, which names no field. The name is valid until the next
// call.
func (d *decoder) name(key []byte) []byte {
	if !slices.ContainsFunc(key, func(c byte) bool { return (c < 'a' || 'z' < c) && c != '_' }) {
		return key
	}
	d.fold = d.fold[:0]
	for i := 0; i < len(key); {
		r, size := rune(key[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(key[i:])
			r = foldRune(r)
			if r >= utf8.RuneSelf {
				return nil
			}
		}
		d.fold = append(d.fold, byte(unicode.ToLower(r)))
		i += size
	}
	return d.fold
}

// foldRune returns the least rune that r equals under simple folding.
func foldRune(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// number consumes the number at d.off and returns its text, and whether
// it is an integer: without fraction or exponent.
func (d *decoder) number() (tok []byte, isInt bool, err error) {
	start := d.off
	if d.peek() == '-' {
		d.off++
	}
	switch c := d.peek(); {
	case c == '0':
		d.off++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return nil, false, d.syntaxError()
	}
	isInt = true
	if d.peek() == '.' {
		isInt = false
		d.off++
		if !d.digits() {
			return nil, false, d.syntaxError()
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		isInt = false
		d.off++
		if c := d.peek(); c == '+' || c == '-' {
			d.off++
		}
		if !d.digits() {
			return nil, false, d.syntaxError()
		}
	}
	return d.data[start:d.off], isInt, nil
}

// digits consumes the decimal digits at d.off and reports whether there
// was one.
func (d *decoder) digits() bool {
	start := d.off
	for d.off < len(d.data) && '0' <= d.data[d.off] && d.data[d.off] <= '9' {
		d.off++
	}
	return d.off > start
}

// str consumes the string at d.off and returns its value: a slice of
// d.data if it has no escape and is valid UTF-8, else d.buf.
//
// It reads d.data from a local variable, which the compiler keeps in
// registers: it reloaded d.data for every byte of the loop below, and
// BenchmarkDecode/finished took 8% more instructions (cachegrind).
func (d *decoder) str() ([]byte, error) {
	data, start := d.data, d.off+1
	for i := start; ; {
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i == len(data) {
			d.off = i
			return nil, d.syntaxError()
		}
		switch c := data[i]; {
		case c == '"':
			d.off = i + 1
			return data[start:i], nil
		case c == '\\':
			return d.unescape(start, i)
		case c < ' ':
			d.off = i
			return nil, d.syntaxError()
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return d.unescape(start, i)
		}
		i += size
	}
}

// plain tells the bytes that stand for themselves in a JSON string: ASCII
// but '"', '\\' and control characters.
var plain = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// unescape reads into d.buf the string that starts at start, whose bytes
// before i are plain, as str returns it: escapes replaced, and invalid
// UTF-8 and surrogate escapes that make no pair as U+FFFD.
func (d *decoder) unescape(start, i int) ([]byte, error) {
	b := d.buf[:0]
	b = append(b, d.data[start:i]...)
	for i < len(d.data) {
		switch c := d.data[i]; {
		case c == '"':
			d.off = i + 1
			d.buf = b
			return b, nil
		case c == '\\':
			var err error
			if b, i, err = d.escape(b, i); err != nil {
				return nil, err
			}
		case c < ' ':
			d.off = i
			return nil, d.syntaxError()
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			b = utf8.AppendRune(b, r)
			i += size
		}
	}
	d.off = len(d.data)
	return nil, d.syntaxError()
}

// escape appends to b the value of the escape at i and returns the offset
// after it. A \u escape of a high surrogate takes the next \u escape with
// it if that is of a low surrogate; else a surrogate reads as U+FFFD.
func (d *decoder) escape(b []byte, i int) ([]byte, int, error) {
	if i+1 >= len(d.data) {
		d.off = len(d.data)
		return nil, 0, d.syntaxError()
	}
	if e := d.data[i+1]; e != 'u' {
		if simpleEscapes[e] == 0 {
			d.off = i + 1
			return nil, 0, d.syntaxError()
		}
		return append(b, simpleEscapes[e]), i + 2, nil
	}
	r := hex4(d.data[i+2:])
	if r < 0 {
		d.off = i
		return nil, 0, fmt.Errorf("invalid \\u escape at offset %d", i)
	}
	i += 6
	if utf16.IsSurrogate(r) {
		r2 := rune(-1)
		if i+1 < len(d.data) && d.data[i] == '\\' && d.data[i+1] == 'u' {
			r2 = hex4(d.data[i+2:])
		}
		r = utf16.DecodeRune(r, r2)
		if r != unicode.ReplacementChar {
			i += 6
		}
	}
	return utf8.AppendRune(b, r), i, nil
}

// simpleEscapes maps the letter of each JSON escape but \u to its byte.
var simpleEscapes = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// hex4 returns the value of the four hexadecimal digits that b starts
// with, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(v)
	}
	return r
}

// literal consumes word, true, false or null, which is at d.off.
func (d *decoder) literal(word string) error {
	for i := range len(word) {
		if d.off >= len(d.data) || d.data[d.off] != word[i] {
			return d.syntaxError()
		}
		d.off++
	}
	return nil
}

// space consumes the JSON white space at d.off.
func (d *decoder) space() {
	for d.off < len(d.data) {
		switch d.data[d.off] {
		case ' ', '\t', '\n', '\r':
			d.off++
		default:
			return
		}
	}
}

// peek returns the byte at d.off, or 0 at the end of the data.
func (d *decoder) peek() byte {
	if d.off < len(d.data) {
		return d.data[d.off]
	}
	return 0
}

// syntaxError returns the error of the byte at d.off, which does not
// continue the JSON, or of the data's end.
func (d *decoder) syntaxError() error {
	if d.off >= len(d.data) {
		return fmt.Errorf("unexpected end of JSON at offset %d", d.off)
	}
	return fmt.Errorf("invalid character %q at offset %d", d.data[d.off], d.off)
}

// mismatch returns the error of the value at d.off, which typ (such as
// "a string") cannot be, or of the byte there if it starts no value.
func (d *decoder) mismatch(typ string) error {
	var what string
	switch c := d.peek(); {
	case c == '{':
		what = "object"
	case c == '[':
		what = "array"
	case c == '"':
		what = "string"
	case c == 't' || c == 'f':
		what = "boolean"
	case c == 'n':
		what = "null"
	case c == '-' || '0' <= c && c <= '9':
		what = "number"
	default:
		return d.syntaxError()
	}
	return fmt.Errorf("JSON %s at offset %d cannot be %s", what, d.off, typ)
}
