package memstore

// expiryHeap orders a shard's entries by expiry time, soonest first. Each
// item carries its time inline so that sifting compares contiguous memory;
// each entry knows its index so that a write can move it in O(log n).
type expiryHeap []expiryItem

type expiryItem struct {
	at int64 // expiry on the store's clock (see Store.clock); math.MaxInt64 for never
	e  *entry
}

func (h *expiryHeap) push(e *entry, at int64) {
	*h = append(*h, expiryItem{at: at, e: e})
	e.index = len(*h) - 1
	h.up(e.index)
}

// update sets the expiry of the item at i.
func (h expiryHeap) update(i int, at int64) {
	old := h[i].at
	h[i].at = at
	if at < old {
		h.up(i)
	} else {
		h.down(i)
	}
}

// remove deletes the item at i.
func (h *expiryHeap) remove(i int) {
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = expiryItem{}
	*h = (*h)[:last]
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

// soonestChild returns the entry that expires soonest after the root's.
func (h expiryHeap) soonestChild() *entry {
	if len(h) > 2 && h[2].at < h[1].at {
		return h[2].e
	}
	return h[1].e
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.index = i
	h[j].e.index = j
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].at <= h[i].at {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down moves the item at i toward the leaves and reports whether it moved.
func (h expiryHeap) down(i int) bool {
	start := i
	for {
		child := 2*i + 1
		if child >= len(h) {
			break
		}
		if right := child + 1; right < len(h) && h[right].at < h[child].at {
			child = right
		}
		if h[i].at <= h[child].at {
			break
		}
		h.swap(i, child)
		i = child
	}
	return i > start
}
