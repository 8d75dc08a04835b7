package store

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxIDLen is the longest task id, in bytes.
const MaxIDLen = 256

// ValidateID reports whether id can name a task. An id is 1 to [MaxIDLen]
// bytes of UTF-8 made of printable characters (letters, marks, numbers,
// punctuation, symbols and the ASCII space), without '{' or '}' (Redis
// Cluster reads them as a hash tag) and is not "." or ".." (which cannot be a
// URL path segment). The error wraps [ErrInvalidID] and says which rule id
// breaks, without quoting the id.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidID, len(id), MaxIDLen)
	case id == "." || id == "..":
		return fmt.Errorf("%w: %q is not a path segment", ErrInvalidID, id)
	case printableASCII(id):
		return nil
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: not UTF-8", ErrInvalidID)
	}
	for i, r := range id {
		switch {
		case r == '{' || r == '}':
			return fmt.Errorf("%w: %q at byte %d", ErrInvalidID, r, i)
		case !unicode.IsPrint(r):
			return fmt.Errorf("%w: unprintable %U at byte %d", ErrInvalidID, r, i)
		}
	}
	return nil
}

// printableASCII reports whether id is all printable ASCII other than
// braces, as most ids are: the common case, checked a byte at a time.
func printableASCII(id string) bool {
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < ' ' || c > '~' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}
