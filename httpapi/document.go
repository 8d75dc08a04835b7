package httpapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/taskstatus/taskstatus/store"
)

// Document is the status document of a task: what [StatusHandler] serves
// and what a [Client] reads. Its JSON form (see [Document.MarshalJSON])
// keeps the origin service's member names.
//
// The handler makes a Document of each state it serves, with its own
// verdict on whether the task was abandoned; a Client decodes one with
// [Document.UnmarshalJSON], the IDField set first.
type Document struct {
	// IDField names the member that holds the task id; "" means
	// [DefaultIDField]. It is not itself a member.
	IDField string

	// State is the task's state. Each of its fields is a member of the
	// document, and each of its result fields too.
	store.State

	// Abandoned is the server's verdict, when it served the document,
	// on whether the task was abandoned ([store.State.Abandoned]): it
	// has not ended and its lease has. It is judged by the server's
	// clock, so that a client need not compare clocks.
	Abandoned bool
}

// MarshalJSON encodes d as a JSON object on one line. Its members are, in
// order:
//
//   - the task id, named by IDField;
//   - correlation_id, status, started_at, completed_at, error_message
//     and error_details;
//   - the result fields ([store.State.Result]), in name order, but those
//     named like another member of the document, so that no result can
//     change what the document says about the task;
//   - pipeline_steps, an object that maps each step's name to its
//     status, in the steps' order;
//   - steps, the list of the steps, each an object with name, status,
//     started_at, completed_at, error, attempt, progress (the step's
//     own, as the task's below) and sub_steps, the list of its
//     sub-steps, each an object with name, status, started_at,
//     completed_at and error;
//   - progress, an object with done, total and message;
//   - attempt, version, created_at, updated_at, lease_until, abandoned,
//     incarnation, kind and labels (an object of the labels' values by
//     their keys);
//   - cancel_requested_at and cancel_reason, and previous_attempts, the
//     list of the outcomes of earlier attempts, oldest first, each an
//     object with attempt, status, started_at, completed_at,
//     error_message and error_details.
//
// Times are RFC 3339 in UTC to the millisecond, trailing zeros of the
// fraction left out as the origin service writes them
// ("2025-11-12T10:00:05.234Z"). Absent values are null: an empty string,
// a zero time, error details or progress that have none. Strings are
// escaped as [encoding/json] does but for its HTML escaping. MarshalJSON
// fails if a result field or an error detail is not valid JSON.
func (d Document) MarshalJSON() ([]byte, error) {
	head, tail := d.members()
	o := head
	for _, name := range slices.Sorted(maps.Keys(d.Result)) {
		if !documentMember(name) && name != head[0].name {
			o = append(o, member{name, d.Result[name]})
		}
	}
	o = append(o, member{"pipeline_steps", pipelineSteps(d.Steps)})
	return append(o, tail...).MarshalJSON()
}

// UnmarshalJSON decodes a document that [Document.MarshalJSON] encoded,
// with the id member named by d.IDField: the members it defines go to
// their fields (but pipeline_steps, which Steps holds too), every other
// member to the result fields. A missing member leaves its field zero, and
// so does null. It refuses a status that is not a task status.
func (d *Document) UnmarshalJSON(b []byte) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return err
	}
	doc := Document{IDField: d.IDField}
	head, tail := doc.members()
	delete(members, "pipeline_steps")
	for _, m := range slices.Concat(head, tail) {
		raw, ok := members[m.name]
		if !ok {
			continue
		}
		delete(members, m.name)
		if err := json.Unmarshal(raw, m.value); err != nil {
			return fmt.Errorf("httpapi: document member %q: %w", m.name, err)
		}
	}
	if !doc.Status.Valid() {
		return fmt.Errorf("httpapi: document status %q is not a task status", doc.Status)
	}
	if len(members) > 0 {
		doc.Result = members
	}
	*d = doc
	return nil
}

// members returns the members of d's document that hold its fields: those
// before the result fields, and those after pipeline_steps. Each value
// points to its field, as a type that encodes it as the document does; a
// type decodes it back.
func (d *Document) members() (head, tail object) {
	head = object{
		{cmp.Or(d.IDField, DefaultIDField), &d.ID},
		{"correlation_id", (*optString)(&d.CorrelationID)},
		{"status", &d.Status},
		{"started_at", (*docTime)(&d.StartedAt)},
		{"completed_at", (*docTime)(&d.CompletedAt)},
		{"error_message", (*optString)(&d.ErrorMessage)},
		{"error_details", (*optFields)(&d.ErrorDetails)},
	}
	tail = object{
		{"steps", (*docSteps)(&d.Steps)},
		{"progress", (*optProgress)(&d.Progress)},
		{"attempt", &d.Attempt},
		{"version", &d.Version},
		{"created_at", (*docTime)(&d.CreatedAt)},
		{"updated_at", (*docTime)(&d.UpdatedAt)},
		{"lease_until", (*docTime)(&d.LeaseUntil)},
		{"abandoned", &d.Abandoned},
		{"incarnation", (*optString)(&d.Incarnation)},
		{"kind", (*optString)(&d.Kind)},
		{"labels", (*optLabels)(&d.Labels)},
		{"cancel_requested_at", (*docTime)(&d.CancelRequestedAt)},
		{"cancel_reason", (*optString)(&d.CancelReason)},
		{"previous_attempts", (*docAttempts)(&d.PreviousAttempts)},
	}
	return head, tail
}

// documentMember reports whether name is the name of a member of the
// document but the id member, which a result field of the same name
// cannot replace.
func documentMember(name string) bool {
	switch name {
	case "correlation_id", "status", "started_at", "completed_at", "error_message",
		"error_details", "pipeline_steps", "steps", "progress", "attempt", "version",
		"created_at", "updated_at", "lease_until", "abandoned", "incarnation", "kind", "labels",
		"cancel_requested_at", "cancel_reason", "previous_attempts":
		return true
	}
	return false
}

// member is one member of a JSON object.
type member struct {
	name  string
	value any
}

// object is a JSON object whose members are encoded in their order, which
// a Go map or struct cannot give: the id member's name is the handler's,
// and the result fields are members of the document itself.
type object []member

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	enc := newEncoder(&b)
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := enc.Encode(m.name); err != nil {
			return nil, fmt.Errorf("member name %q: %w", m.name, err)
		}
		b.Truncate(b.Len() - 1) // the newline Encode ends each value with
		b.WriteByte(':')
		if err := enc.Encode(m.value); err != nil {
			return nil, fmt.Errorf("member %q: %w", m.name, err)
		}
		b.Truncate(b.Len() - 1)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// newEncoder returns an encoder to b that leaves '<', '>' and '&' as they
// are: the document is JSON, not HTML, and its text stays as written.
func newEncoder(b *bytes.Buffer) *json.Encoder {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	return enc
}

// marshal returns v encoded as newEncoder does, without a newline.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := newEncoder(&b).Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes()[:b.Len()-1], nil
}

// optString is a string that is null when empty.
type optString string

func (s optString) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte("null"), nil
	}
	return marshal(string(s))
}

// timeLayout is RFC 3339 in UTC to the millisecond, without trailing zeros
// in the fraction, as the origin service writes times:
// "2025-11-12T10:00:00Z", "2025-11-12T10:00:05.234Z".
const timeLayout = "2006-01-02T15:04:05.999Z07:00"

// docTime is a time in timeLayout, or null when zero.
type docTime time.Time

func (t docTime) MarshalJSON() ([]byte, error) {
	if time.Time(t).IsZero() {
		return []byte("null"), nil
	}
	b := append([]byte{'"'}, time.Time(t).UTC().Truncate(time.Millisecond).Format(timeLayout)...)
	return append(b, '"'), nil
}

func (t *docTime) UnmarshalJSON(b []byte) error {
	return (*time.Time)(t).UnmarshalJSON(b) // null leaves it as it is
}

// optFields are error details, null when there are none.
type optFields map[string]json.RawMessage

func (f optFields) MarshalJSON() ([]byte, error) {
	if len(f) == 0 {
		return []byte("null"), nil
	}
	return marshal(map[string]json.RawMessage(f))
}

// optLabels are labels, null when there are none.
type optLabels map[string]string

func (l optLabels) MarshalJSON() ([]byte, error) {
	if len(l) == 0 {
		return []byte("null"), nil
	}
	return marshal(map[string]string(l))
}

// optProgress is progress, null when zero. Unlike [store.Progress], its
// members are all present.
type optProgress store.Progress

func (p optProgress) MarshalJSON() ([]byte, error) {
	if p == (optProgress{}) {
		return []byte("null"), nil
	}
	return marshal(struct {
		Done    int64  `json:"done"`
		Total   int64  `json:"total"`
		Message string `json:"message"`
	}{p.Done, p.Total, p.Message})
}

// docSteps is the steps member: a list, empty if there are none, of
// steps whose members are all present.
type docSteps []store.Step

type docStep struct {
	Name        string           `json:"name"`
	Status      store.StepStatus `json:"status"`
	StartedAt   docTime          `json:"started_at"`
	CompletedAt docTime          `json:"completed_at"`
	Error       optString        `json:"error"`
	Attempt     int              `json:"attempt"`
	Progress    optProgress      `json:"progress"`
	SubSteps    []docSubStep     `json:"sub_steps"`
}

type docSubStep struct {
	Name        string           `json:"name"`
	Status      store.StepStatus `json:"status"`
	StartedAt   docTime          `json:"started_at"`
	CompletedAt docTime          `json:"completed_at"`
	Error       optString        `json:"error"`
}

func (s docSteps) MarshalJSON() ([]byte, error) {
	steps := make([]docStep, len(s))
	for i, st := range s {
		subs := make([]docSubStep, len(st.SubSteps))
		for j, sub := range st.SubSteps {
			subs[j] = docSubStep{sub.Name, sub.Status, docTime(sub.StartedAt), docTime(sub.CompletedAt), optString(sub.Error)}
		}
		steps[i] = docStep{st.Name, st.Status, docTime(st.StartedAt), docTime(st.CompletedAt), optString(st.Error), st.Attempt,
			optProgress(st.Progress), subs}
	}
	return marshal(steps)
}

// docAttempts is the previous_attempts member: a list, empty if there are
// none, of attempts whose members are all present.
type docAttempts []store.Attempt

type docAttempt struct {
	Attempt      int          `json:"attempt"`
	Status       store.Status `json:"status"`
	StartedAt    docTime      `json:"started_at"`
	CompletedAt  docTime      `json:"completed_at"`
	ErrorMessage optString    `json:"error_message"`
	ErrorDetails optFields    `json:"error_details"`
}

func (a docAttempts) MarshalJSON() ([]byte, error) {
	attempts := make([]docAttempt, len(a))
	for i, at := range a {
		attempts[i] = docAttempt{at.Attempt, at.Status, docTime(at.StartedAt), docTime(at.CompletedAt),
			optString(at.ErrorMessage), optFields(at.ErrorDetails)}
	}
	return marshal(attempts)
}

// pipelineSteps returns the pipeline_steps member of steps.
func pipelineSteps(steps []store.Step) object {
	o := make(object, len(steps))
	for i, s := range steps {
		o[i] = member{s.Name, s.Status}
	}
	return o
}
