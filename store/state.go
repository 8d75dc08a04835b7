package store

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Status is the status of a task. Its values are the JSON strings served to
// clients.
type Status string

// The statuses of a task.
const (
	StatusPending  Status = "pending"  // queued, not started
	StatusRunning  Status = "running"  // started
	StatusSuccess  Status = "success"  // finished; terminal
	StatusFailed   Status = "failed"   // stopped with an error; terminal
	StatusCanceled Status = "canceled" // stopped before finishing; terminal
)

// Statuses returns every status: pending, running, then the terminal ones.
func Statuses() []Status {
	return []Status{StatusPending, StatusRunning, StatusSuccess, StatusFailed, StatusCanceled}
}

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusSuccess, StatusFailed, StatusCanceled:
		return true
	}
	return false
}

// Terminal reports whether s is success, failed or canceled: a task in a
// terminal status never changes again except through a new attempt.
func (s Status) Terminal() bool {
	return s == StatusSuccess || s == StatusFailed || s == StatusCanceled
}

// StepStatus is the status of one step of a task. Its values are the JSON
// strings served to clients.
type StepStatus string

// The statuses of a step.
const (
	StepPending StepStatus = "pending" // planned, not started
	StepRunning StepStatus = "running" // started
	StepSuccess StepStatus = "success" // finished; terminal
	StepFailed  StepStatus = "failed"  // stopped with an error; terminal
	StepSkipped StepStatus = "skipped" // not run; terminal
)

// Valid reports whether s is one of the defined step statuses.
func (s StepStatus) Valid() bool {
	switch s {
	case StepPending, StepRunning, StepSuccess, StepFailed, StepSkipped:
		return true
	}
	return false
}

// Terminal reports whether s is success, failed or skipped: a step in a
// terminal status never changes again.
func (s StepStatus) Terminal() bool {
	return s == StepSuccess || s == StepFailed || s == StepSkipped
}

// State is the recorded state of one task at one version.
//
// Stores take and hand out States as copies (see [Store]): whoever holds a
// State may change it, and no one else sees the change. [State.Clone]
// makes such a copy.
//
// Times are in UTC. The zero time means "not yet" (a pending task has no
// StartedAt, an unfinished one no CompletedAt).
type State struct {
	ID string `json:"id"`
	// Incarnation differs each time the id is created: it tells a task
	// from one created under the same id after the first was deleted,
	// expired or lost. Writes name it (see [Write]).
	Incarnation   string `json:"incarnation,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Status        Status `json:"status"`
	// Kind says what sort of task this is, such as "document". It is set
	// when the task is created and never changes. See [ValidateKind].
	Kind string `json:"kind,omitempty"`
	// Labels are facts about the task that it can be found by (see
	// [Lister]), such as "project_id" or "tenant". They are set when the
	// task is created and never change. See [ValidateLabel].
	Labels map[string]string `json:"labels,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// LeaseUntil is when the work's lease ends: a task that has not ended
	// by then, and whose lease was not renewed, was abandoned (its process
	// died). Zero when the writer keeps no lease. See [State.Abandoned].
	LeaseUntil time.Time `json:"lease_until,omitzero"`

	// ErrorMessage says why a failed or canceled task ended.
	ErrorMessage string `json:"error_message,omitempty"`
	// ErrorDetails holds structured facts about the failure, such as
	// "exception_type". Each value is one encoded JSON value.
	ErrorDetails map[string]json.RawMessage `json:"error_details,omitempty"`

	// Steps are the task's steps in the order they were planned or started.
	Steps []Step `json:"steps,omitempty"`
	// Progress is the last progress the work reported.
	Progress Progress `json:"progress,omitzero"`
	// Result holds the work's domain results, such as "entities_extracted".
	// Each value is one encoded JSON value.
	Result map[string]json.RawMessage `json:"result,omitempty"`

	// CancelRequestedAt is when the cancellation of the task's attempt
	// was asked for, zero if it was not. The work learns of the request
	// and stops, and the task ends canceled, unless it ended first.
	CancelRequestedAt time.Time `json:"cancel_requested_at,omitzero"`
	// CancelReason says why the cancellation was asked for.
	CancelReason string `json:"cancel_reason,omitempty"`

	// Attempt counts the task's attempts, from 1; a retry starts a new one.
	Attempt int `json:"attempt"`
	// PreviousAttempts are the outcomes of the task's earlier attempts,
	// oldest first: at most [MaxPreviousAttempts], the oldest left out.
	PreviousAttempts []Attempt `json:"previous_attempts,omitempty"`
	// Version increments on every write, from 1 at creation. It orders
	// changes and guards writes (see [Store.Put]).
	Version int64 `json:"version"`
}

// Step is the recorded state of one named step of a task.
type Step struct {
	Name        string     `json:"name"`
	Status      StepStatus `json:"status"`
	StartedAt   time.Time  `json:"started_at,omitzero"`
	CompletedAt time.Time  `json:"completed_at,omitzero"`
	// Error is the message of the step's failure, or of its last failed
	// attempt while it is retried.
	Error string `json:"error,omitempty"`
	// Attempt counts the step's attempts, from 1 when it starts.
	Attempt int `json:"attempt,omitempty"`
	// Progress is how far the step's own work has come, as it last
	// reported it (the task's progress is [State.Progress]).
	Progress Progress `json:"progress,omitzero"`
	// SubSteps are the parts of the step that it recorded, in the order
	// they were first recorded, at most MaxSubSteps; a sub-step has none
	// of its own.
	SubSteps []SubStep `json:"sub_steps,omitempty"`
}

// validate reports whether a has a defined status and at most
// MaxSubSteps sub-steps, each of a defined status.
func (a Step) validate() error {
	if !a.Status.Valid() {
		return fmt.Errorf("%w: step %q has status %q", ErrInvalidInput, a.Name, a.Status)
	}
	if len(a.SubSteps) > MaxSubSteps {
		return fmt.Errorf("%w: step %q has %d sub-steps (%d allowed)", ErrInvalidInput, a.Name, len(a.SubSteps), MaxSubSteps)
	}
	for _, sub := range a.SubSteps {
		if !sub.Status.Valid() {
			return fmt.Errorf("%w: sub-step %q of step %q has status %q", ErrInvalidInput, sub.Name, a.Name, sub.Status)
		}
	}
	return nil
}

// MaxSubSteps bounds the sub-steps of a step ([Step.SubSteps]).
const MaxSubSteps = 64

// SubStep is a part of a step: its name, status, times and error. Its
// statuses are those of a step.
type SubStep struct {
	Name        string     `json:"name"`
	Status      StepStatus `json:"status"`
	StartedAt   time.Time  `json:"started_at,omitzero"`
	CompletedAt time.Time  `json:"completed_at,omitzero"`
	// Error is the message of the sub-step's failure.
	Error string `json:"error,omitempty"`
}

// MaxPreviousAttempts bounds the outcomes of earlier attempts a task keeps
// ([State.PreviousAttempts]).
const MaxPreviousAttempts = 10

// Attempt is the outcome of an attempt of a task that was retried: how it
// ended, when, and why if it failed or was canceled.
type Attempt struct {
	Attempt     int       `json:"attempt"`
	Status      Status    `json:"status"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// ErrorMessage and ErrorDetails are those of the task when the
	// attempt ended (see [State]).
	ErrorMessage string                     `json:"error_message,omitempty"`
	ErrorDetails map[string]json.RawMessage `json:"error_details,omitempty"`
}

// Progress is how far the work has come: Done of Total units (Total is 0
// when unknown) and a short message for people.
type Progress struct {
	Done    int64  `json:"done"`
	Total   int64  `json:"total,omitempty"`
	Message string `json:"message,omitempty"`
}

// Step returns the step named name and whether the task has one.
func (s State) Step(name string) (Step, bool) {
	for _, st := range s.Steps {
		if st.Name == name {
			return st, true
		}
	}
	return Step{}, false
}

// Validate reports whether s can be stored: its id passes [ValidateID]
// (else the error wraps [ErrInvalidID]), its incarnation is at most
// [MaxIDLen] bytes, its version is at least 1, its kind and labels pass
// [ValidateKind] and [ValidateLabel], its status and every step status
// are defined, and it keeps at most [MaxPreviousAttempts] previous
// attempts, each of a defined status (else the error wraps
// [ErrInvalidInput]). It does not judge transitions.
func (s State) Validate() error {
	if err := ValidateID(s.ID); err != nil {
		return err
	}
	switch {
	case len(s.Incarnation) > MaxIDLen:
		return fmt.Errorf("%w: incarnation of %d bytes (%d allowed)", ErrInvalidInput, len(s.Incarnation), MaxIDLen)
	case s.Version < 1:
		return fmt.Errorf("%w: version %d is below 1", ErrInvalidInput, s.Version)
	case len(s.Labels) > MaxLabels:
		return fmt.Errorf("%w: %d labels (%d allowed)", ErrInvalidInput, len(s.Labels), MaxLabels)
	}
	if s.Kind != "" {
		if err := ValidateKind(s.Kind); err != nil {
			return err
		}
	}
	for k, v := range s.Labels {
		if err := ValidateLabel(k, v); err != nil {
			return err
		}
	}
	if !s.Status.Valid() {
		return fmt.Errorf("%w: status %q", ErrInvalidInput, s.Status)
	}
	for _, st := range s.Steps {
		if err := st.validate(); err != nil {
			return err
		}
	}
	if len(s.PreviousAttempts) > MaxPreviousAttempts {
		return fmt.Errorf("%w: %d previous attempts (%d allowed)", ErrInvalidInput, len(s.PreviousAttempts), MaxPreviousAttempts)
	}
	for _, a := range s.PreviousAttempts {
		if !a.Status.Valid() {
			return fmt.Errorf("%w: attempt %d has status %q", ErrInvalidInput, a.Attempt, a.Status)
		}
	}
	return nil
}

// Abandoned reports whether s is a task that has not ended and whose lease
// ended before now: the process doing its work stopped renewing it, most
// likely because it died. A task without a lease is never abandoned.
func (s State) Abandoned(now time.Time) bool {
	return !s.Status.Terminal() && !s.LeaseUntil.IsZero() && now.After(s.LeaseUntil)
}

// Clone returns a deep copy of s, which the caller may modify.
func (s State) Clone() State {
	s.Steps = slices.Clone(s.Steps)
	for i := range s.Steps {
		s.Steps[i].SubSteps = slices.Clone(s.Steps[i].SubSteps)
	}
	s.Labels = maps.Clone(s.Labels)
	s.ErrorDetails = cloneRaw(s.ErrorDetails)
	s.Result = cloneRaw(s.Result)
	if s.PreviousAttempts != nil {
		s.PreviousAttempts = slices.Clone(s.PreviousAttempts)
		for i := range s.PreviousAttempts {
			s.PreviousAttempts[i].ErrorDetails = cloneRaw(s.PreviousAttempts[i].ErrorDetails)
		}
	}
	return s
}

func cloneRaw(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	c := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

// Equal reports whether s and o record the same state: the same fields,
// times equal as instants, and the same JSON bytes in ErrorDetails and Result.
func (s State) Equal(o State) bool {
	return s.ID == o.ID && s.Incarnation == o.Incarnation && s.CorrelationID == o.CorrelationID &&
		s.Status == o.Status && s.Kind == o.Kind && maps.Equal(s.Labels, o.Labels) && s.timesEqual(o) &&
		s.ErrorMessage == o.ErrorMessage && rawEqual(s.ErrorDetails, o.ErrorDetails) &&
		slices.EqualFunc(s.Steps, o.Steps, Step.equal) && s.Progress == o.Progress &&
		rawEqual(s.Result, o.Result) && s.attemptsEqual(o) && s.Version == o.Version
}

// attemptsEqual reports whether s and o record the same attempts: the
// current one, its cancel request, and the earlier ones.
func (s State) attemptsEqual(o State) bool {
	return s.Attempt == o.Attempt && s.CancelReason == o.CancelReason &&
		slices.EqualFunc(s.PreviousAttempts, o.PreviousAttempts, Attempt.equal)
}

// timesEqual reports whether s and o have the same times, as instants.
func (s State) timesEqual(o State) bool {
	return s.CreatedAt.Equal(o.CreatedAt) && s.StartedAt.Equal(o.StartedAt) &&
		s.UpdatedAt.Equal(o.UpdatedAt) && s.CompletedAt.Equal(o.CompletedAt) &&
		s.LeaseUntil.Equal(o.LeaseUntil) && s.CancelRequestedAt.Equal(o.CancelRequestedAt)
}

func (a Step) equal(b Step) bool {
	return a.Name == b.Name && a.Status == b.Status && a.StartedAt.Equal(b.StartedAt) &&
		a.CompletedAt.Equal(b.CompletedAt) && a.Error == b.Error && a.Attempt == b.Attempt &&
		a.Progress == b.Progress && slices.EqualFunc(a.SubSteps, b.SubSteps, SubStep.equal)
}

func (a SubStep) equal(b SubStep) bool {
	return a.Name == b.Name && a.Status == b.Status && a.StartedAt.Equal(b.StartedAt) &&
		a.CompletedAt.Equal(b.CompletedAt) && a.Error == b.Error
}

func (a Attempt) equal(b Attempt) bool {
	return a.Attempt == b.Attempt && a.Status == b.Status && a.StartedAt.Equal(b.StartedAt) &&
		a.CompletedAt.Equal(b.CompletedAt) && a.ErrorMessage == b.ErrorMessage && rawEqual(a.ErrorDetails, b.ErrorDetails)
}

func rawEqual(a, b map[string]json.RawMessage) bool {
	return maps.EqualFunc(a, b, func(x, y json.RawMessage) bool { return string(x) == string(y) })
}
