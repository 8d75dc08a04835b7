package statecache

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/taskstatus/taskstatus/store"
)

// text is a Source of the bytes of a string.
type text string

func (t text) Same(o text) bool { return t == o }
func (t text) Size() int        { return len(t) }

// TestCacheServesCopies checks that a state kept is served for the same
// source, and only for it, as a copy the caller may change.
func TestCacheServesCopies(t *testing.T) {
	var c Cache[text]
	_, ok := c.get("doc-1", "a")
	require.False(t, ok, "an empty cache serves nothing")
	c.keep("doc-1", "a", store.State{ID: "doc-1", Steps: []store.Step{{Name: "x"}}})
	got, ok := c.get("doc-1", "a")
	require.True(t, ok)
	require.Equal(t, "x", got.Steps[0].Name)
	got.Steps[0].Name = "changed"
	again, ok := c.get("doc-1", "a")
	require.True(t, ok)
	require.Equal(t, "x", again.Steps[0].Name, "a change to a copy reached the state kept")
	_, ok = c.get("doc-1", "b")
	require.False(t, ok, "another source must not be served the state kept")
	_, ok = c.get("doc-2", "a")
	require.False(t, ok, "another task must not be served the state kept")
	c.keep("doc-1", "b", store.State{ID: "doc-1", Version: 2})
	got, ok = c.get("doc-1", "b")
	require.True(t, ok)
	require.EqualValues(t, 2, got.Version, "a newer state replaces the one kept")
	_, ok = c.get("doc-1", "a")
	require.False(t, ok)
}

// TestCacheBounded checks that the sources kept stay within maxBytes
// however many tasks are kept, and that a source larger than maxSource is
// not kept.
func TestCacheBounded(t *testing.T) {
	var c Cache[text]
	src := text(strings.Repeat("x", 1000))
	for i := range 2 * maxBytes / len(src) {
		c.keep(fmt.Sprintf("doc-%d", i), src, store.State{})
		require.LessOrEqual(t, c.size, maxBytes)
	}
	require.Greater(t, c.size, maxBytes/2, "the bound must be used")
	sum := 0
	for _, e := range c.entries {
		sum += e.from.Size()
	}
	require.Equal(t, sum, c.size, "size must count the sources kept")

	var big Cache[text]
	big.keep("doc-big", text(strings.Repeat("x", maxSource+1)), store.State{})
	require.Empty(t, big.entries, "a source larger than maxSource must not be kept")
}

// TestDecodeKeepsWhatDecodes checks that Decode decodes once for the same
// source, keeps nothing when decoding fails, and decodes another source.
func TestDecodeKeepsWhatDecodes(t *testing.T) {
	var c Cache[text]
	calls := 0
	decode := func(st store.State, err error) func() (store.State, error) {
		return func() (store.State, error) { calls++; return st, err }
	}
	_, err := c.Decode("doc-1", "a", decode(store.State{}, store.ErrCorrupt))
	require.ErrorIs(t, err, store.ErrCorrupt)
	require.Empty(t, c.entries, "a failed decoding must not be kept")
	got, err := c.Decode("doc-1", "a", decode(store.State{ID: "doc-1", Version: 1}, nil))
	require.NoError(t, err)
	require.EqualValues(t, 1, got.Version)
	got, err = c.Decode("doc-1", "a", decode(store.State{ID: "doc-1", Version: 9}, nil))
	require.NoError(t, err)
	require.EqualValues(t, 1, got.Version, "the same source must be served from what was kept")
	require.Equal(t, 2, calls, "the same source must not be decoded again")
	got, err = c.Decode("doc-1", "b", decode(store.State{ID: "doc-1", Version: 2}, nil))
	require.NoError(t, err)
	require.EqualValues(t, 2, got.Version, "another source must be decoded")
}
