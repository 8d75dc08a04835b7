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
	_, ok := c.Get("doc-1", "a")
	require.False(t, ok, "an empty cache serves nothing")
	c.Keep("doc-1", "a", store.State{ID: "doc-1", Steps: []store.Step{{Name: "x"}}})
	got, ok := c.Get("doc-1", "a")
	require.True(t, ok)
	require.Equal(t, "x", got.Steps[0].Name)
	got.Steps[0].Name = "changed"
	again, ok := c.Get("doc-1", "a")
	require.True(t, ok)
	require.Equal(t, "x", again.Steps[0].Name, "a change to a copy reached the state kept")
	_, ok = c.Get("doc-1", "b")
	require.False(t, ok, "another source must not be served the state kept")
	_, ok = c.Get("doc-2", "a")
	require.False(t, ok, "another task must not be served the state kept")
	c.Keep("doc-1", "b", store.State{ID: "doc-1", Version: 2})
	got, ok = c.Get("doc-1", "b")
	require.True(t, ok)
	require.EqualValues(t, 2, got.Version, "a newer state replaces the one kept")
	_, ok = c.Get("doc-1", "a")
	require.False(t, ok)
}

// TestCacheBounded checks that the sources kept stay within MaxBytes
// however many tasks are kept, and that a source larger than MaxSource is
// not kept.
func TestCacheBounded(t *testing.T) {
	var c Cache[text]
	src := text(strings.Repeat("x", 1000))
	for i := range 2 * MaxBytes / len(src) {
		c.Keep(fmt.Sprintf("doc-%d", i), src, store.State{})
		require.LessOrEqual(t, c.size, MaxBytes)
	}
	require.Greater(t, c.size, MaxBytes/2, "the bound must be used")
	sum := 0
	for _, e := range c.entries {
		sum += e.from.Size()
	}
	require.Equal(t, sum, c.size, "size must count the sources kept")

	var big Cache[text]
	big.Keep("doc-big", text(strings.Repeat("x", MaxSource+1)), store.State{})
	require.Empty(t, big.entries, "a source larger than MaxSource must not be kept")
}
