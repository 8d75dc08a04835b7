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
// A State read from a Store or delivered by a Watcher may share its Steps,
// ErrorDetails and Result with the store and with other readers: treat it as
// read-only, and call [State.Clone] for a copy to modify. [Store.Put] keeps
// none of the Steps it is given. ErrorDetails and Result, maps of encoded
// JSON values, are never changed in place, by anyone: a writer that changes
// them makes a new map.
//
// Times are in UTC. The zero time means "not yet" (a pending task has no
// StartedAt, an unfinished one no CompletedAt).
type State struct {
	ID            string `json:"id"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Status        Status `json:"status"`

	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// LeaseUntil is when the work's lease ends: a task that has not ended
	// by then, and whose lease was not renewed, was abandoned (its process
	// died). Zero when the writer keeps no lease. See [State.Stale].
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

	// Attempt counts the task's attempts, from 1; a retry starts a new one.
	Attempt int `json:"attempt"`
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
// (else the error wraps [ErrInvalidID]), its version is at least 1 and its
// status and every step status are defined (else the error wraps
// [ErrInvalidInput]). Stores call it in Put; it does not judge transitions.
func (s State) Validate() error {
	if err := ValidateID(s.ID); err != nil {
		return err
	}
	if s.Version < 1 {
		return fmt.Errorf("%w: version %d is below 1", ErrInvalidInput, s.Version)
	}
	if !s.Status.Valid() {
		return fmt.Errorf("%w: status %q", ErrInvalidInput, s.Status)
	}
	for _, st := range s.Steps {
		if !st.Status.Valid() {
			return fmt.Errorf("%w: step %q has status %q", ErrInvalidInput, st.Name, st.Status)
		}
	}
	return nil
}

// Stale reports whether s is a task that has not ended and whose lease
// ended before now: the process doing its work stopped renewing it, most
// likely because it died. A task without a lease is never stale.
func (s State) Stale(now time.Time) bool {
	return !s.Status.Terminal() && !s.LeaseUntil.IsZero() && now.After(s.LeaseUntil)
}

// Clone returns a deep copy of s, which the caller may modify.
func (s State) Clone() State {
	s.Steps = slices.Clone(s.Steps)
	s.ErrorDetails = cloneRaw(s.ErrorDetails)
	s.Result = cloneRaw(s.Result)
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
	return s.ID == o.ID && s.CorrelationID == o.CorrelationID && s.Status == o.Status &&
		s.CreatedAt.Equal(o.CreatedAt) && s.StartedAt.Equal(o.StartedAt) &&
		s.UpdatedAt.Equal(o.UpdatedAt) && s.CompletedAt.Equal(o.CompletedAt) &&
		s.LeaseUntil.Equal(o.LeaseUntil) &&
		s.ErrorMessage == o.ErrorMessage && rawEqual(s.ErrorDetails, o.ErrorDetails) &&
		slices.EqualFunc(s.Steps, o.Steps, Step.equal) && s.Progress == o.Progress &&
		rawEqual(s.Result, o.Result) && s.Attempt == o.Attempt && s.Version == o.Version
}

func (a Step) equal(b Step) bool {
	return a.Name == b.Name && a.Status == b.Status && a.StartedAt.Equal(b.StartedAt) &&
		a.CompletedAt.Equal(b.CompletedAt) && a.Error == b.Error && a.Attempt == b.Attempt
}

func rawEqual(a, b map[string]json.RawMessage) bool {
	return maps.EqualFunc(a, b, func(x, y json.RawMessage) bool { return string(x) == string(y) })
}
