package httpapi

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/taskstatus/taskstatus/store"
)

func TestRenderCacheBounds(t *testing.T) {
	var c renderCache
	c.init()
	t0 := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	doc := func(n int) *rendered { return &rendered{body: make([]byte, n)} }
	state := func(id string, version int64, created time.Time) Document {
		return Document{State: store.State{ID: id, Version: version, Attempt: 1, CreatedAt: created, UpdatedAt: created.Add(time.Duration(version))}}
	}

	c.put(state("big", 1, t0), doc(maxCachedDoc+1))
	assert.Nil(t, c.get(state("big", 1, t0)), "too large to keep")

	for i := range 100 {
		c.put(state(fmt.Sprint(i), 1, t0), doc(maxCacheBytes/40))
		assert.LessOrEqual(t, c.size, maxCacheBytes)
	}
	assert.NotNil(t, c.get(state("99", 1, t0)))
	total := 0
	for _, e := range c.entries {
		total += len(e.out.body)
	}
	assert.Equal(t, total, c.size)

	v2 := doc(10)
	c.put(state("99", 2, t0), v2)
	assert.Nil(t, c.get(state("99", 1, t0)))
	assert.Same(t, v2, c.get(state("99", 2, t0)))
	c.put(state("99", 1, t0), doc(10))
	assert.Same(t, v2, c.get(state("99", 2, t0)), "an older version does not replace a newer one")

	again := doc(10)
	c.put(state("99", 1, t0.Add(time.Millisecond)), again)
	assert.Same(t, again, c.get(state("99", 1, t0.Add(time.Millisecond))), "a task created again replaces its predecessor")
	assert.Nil(t, c.get(state("99", 2, t0)))
}

func TestRenderCacheKeys(t *testing.T) {
	var c renderCache
	c.init()
	t0 := time.Date(2025, 11, 12, 10, 0, 0, 0, time.UTC)
	doc := Document{State: store.State{ID: "t", Incarnation: "a", Version: 3, CreatedAt: t0}}
	out := &rendered{body: []byte("{}")}
	c.put(doc, out)
	assert.Same(t, out, c.get(doc))

	abandoned := doc
	abandoned.Abandoned = true
	assert.Nil(t, c.get(abandoned), "the verdict on abandonment is part of the key")
	other := doc
	other.Incarnation = "b"
	assert.Nil(t, c.get(other), "a task created anew is another task")

	c.put(abandoned, &rendered{body: []byte("{}")})
	assert.Nil(t, c.get(doc), "replaced")
	assert.NotNil(t, c.get(abandoned))
}
