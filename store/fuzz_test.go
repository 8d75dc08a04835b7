package store_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/taskstatus/taskstatus/store"
)

// FuzzValidateID checks that ValidateID accepts exactly the ids its doc
// describes and never fails in another way.
func FuzzValidateID(f *testing.F) {
	for _, id := range []string{"doc-123", "", ".", "..", "a{b}", "nul\x00", "\xff", "文書", strings.Repeat("x", 257)} {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := store.ValidateID(id)
		want := id != "" && len(id) <= store.MaxIDLen && id != "." && id != ".." &&
			utf8.ValidString(id) && !strings.ContainsAny(id, "{}") &&
			strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
		if want != (err == nil) {
			t.Fatalf("ValidateID(%q) = %v, want valid=%v", id, err, want)
		}
		if err != nil && !errors.Is(err, store.ErrInvalidID) {
			t.Fatalf("ValidateID(%q) = %v, not wrapping ErrInvalidID", id, err)
		}
	})
}
