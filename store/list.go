package store

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Limits of kinds, labels and pages.
const (
	MaxLabels       = 8    // labels per task
	MaxKindLen      = 64   // bytes of a kind, and of a label's key
	MaxPageSize     = 1000 // tasks per page of Lister.List
	DefaultPageSize = 50   // tasks per page when a caller asks for none
)

// Lister is implemented by stores that can find tasks: by status, kind,
// label, creation time and lease, page by page, and count them. Callers
// detect it with a type assertion.
type Lister interface {
	// List returns the tasks that f matches, newest first (by creation
	// time, then by id, both descending), at most pageSize of them (1 to
	// MaxPageSize; 0 means DefaultPageSize). The page's NextPageToken,
	// empty on the last page, is passed as pageToken for the next one:
	// across the pages of one filter, a task that did not change meanwhile
	// is returned once, and none is skipped. An invalid filter, page size
	// or token (one made for another filter, say) is refused with an error
	// wrapping ErrInvalidInput. Expired tasks are never returned.
	List(ctx context.Context, f Filter, pageSize int, pageToken string) (Page, error)

	// Count returns how many tasks f matches, by status; statuses no task
	// has are left out. f may set Kind and Label only (ErrInvalidInput
	// otherwise).
	Count(ctx context.Context, f Filter) (map[Status]int64, error)
}

// Filter says which tasks a [Lister] finds. Its zero value finds every
// task; each field that is set narrows it.
type Filter struct {
	Statuses      []Status  // tasks in any of these statuses
	Kind          string    // tasks of this kind
	Label         Label     // tasks with this label
	CreatedAfter  time.Time // tasks created at this time or later
	CreatedBefore time.Time // tasks created before this time
	// LeaseEndedBefore finds tasks that have not ended and whose lease
	// ended before this time: abandoned ones (see [State.Abandoned]).
	LeaseEndedBefore time.Time
}

// Label is one label of a task: a key and its value.
type Label struct {
	Key, Value string
}

// Page is a page of tasks that [Lister.List] found.
type Page struct {
	Tasks         []State
	NextPageToken string // "" on the last page
}

// Validate reports whether f can be used: its statuses are defined, its
// kind and label are valid and its time range is not empty. The error
// wraps ErrInvalidInput.
func (f Filter) Validate() error {
	for _, s := range f.Statuses {
		if !s.Valid() {
			return fmt.Errorf("%w: status %q", ErrInvalidInput, s)
		}
	}
	if f.Kind != "" {
		if err := ValidateKind(f.Kind); err != nil {
			return err
		}
	}
	if f.Label != (Label{}) {
		if err := ValidateLabel(f.Label.Key, f.Label.Value); err != nil {
			return err
		}
	}
	if !f.CreatedAfter.IsZero() && !f.CreatedBefore.IsZero() && !f.CreatedAfter.Before(f.CreatedBefore) {
		return fmt.Errorf("%w: created after %v and before %v", ErrInvalidInput, f.CreatedAfter, f.CreatedBefore)
	}
	return nil
}

// Match reports whether f finds st.
func (f Filter) Match(st State) bool {
	switch {
	case len(f.Statuses) > 0 && !slices.Contains(f.Statuses, st.Status),
		f.Kind != "" && st.Kind != f.Kind,
		f.Label != (Label{}) && (st.Labels == nil || st.Labels[f.Label.Key] != f.Label.Value),
		!f.CreatedAfter.IsZero() && st.CreatedAt.Before(f.CreatedAfter),
		!f.CreatedBefore.IsZero() && !st.CreatedAt.Before(f.CreatedBefore):
		return false
	case !f.LeaseEndedBefore.IsZero():
		return !st.Status.Terminal() && !st.LeaseUntil.IsZero() && st.LeaseUntil.Before(f.LeaseEndedBefore)
	}
	return true
}

// ValidateKind reports whether kind can be a task's kind: 1 to MaxKindLen
// bytes of ASCII letters, digits, '_', '-' and '.'. The error wraps
// ErrInvalidInput. A label's key follows the same rule.
func ValidateKind(kind string) error {
	if kind == "" || len(kind) > MaxKindLen {
		return fmt.Errorf("%w: kind or label key of %d bytes (1 to %d allowed)", ErrInvalidInput, len(kind), MaxKindLen)
	}
	for i := range len(kind) {
		if c := kind[i]; !isNameByte(c) {
			return fmt.Errorf("%w: kind or label key %q has %q (letters, digits, '_', '-' and '.' allowed)", ErrInvalidInput, kind, c)
		}
	}
	return nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.'
}

// ValidateLabel reports whether key and value can be a label: key follows
// the rule of [ValidateKind], and value that of [ValidateID]. The error
// wraps ErrInvalidInput.
func ValidateLabel(key, value string) error {
	if err := ValidateKind(key); err != nil {
		return err
	}
	if err := ValidateID(value); err != nil {
		return fmt.Errorf("%w: label %s: %w", ErrInvalidInput, key, err)
	}
	return nil
}
