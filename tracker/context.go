package tracker

import "context"

// MaxCorrelationIDLen is the longest correlation id kept, in bytes.
const MaxCorrelationIDLen = 128

type correlationKey struct{}

// ContextWithCorrelationID returns a copy of ctx that carries the
// correlation id id, which the Tracker records with the tasks it writes.
// An id that [ValidCorrelationID] rejects is not carried: ctx is returned
// as it is.
func ContextWithCorrelationID(ctx context.Context, id string) context.Context {
	if !ValidCorrelationID(id) {
		return ctx
	}
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation id ctx carries, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// ValidCorrelationID reports whether id is a sane correlation id: 1 to
// [MaxCorrelationIDLen] bytes of visible ASCII (no spaces or control
// characters), which is safe to log and to echo in a header.
func ValidCorrelationID(id string) bool {
	if id == "" || len(id) > MaxCorrelationIDLen {
		return false
	}
	for i := range len(id) {
		if id[i] < '!' || id[i] > '~' {
			return false
		}
	}
	return true
}
