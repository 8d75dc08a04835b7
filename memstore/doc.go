// Package memstore keeps task states in the memory of one process: for a
// single instance, for development and for tests.
//
// A [Store] implements [store.Store] and [store.Watcher]. Tasks are spread
// over shards, each with its own lock, so writers of different tasks rarely
// wait for each other.
//
// # Expiry
//
// A task whose time to live has ended is invisible at once: Get reports
// [store.ErrNotFound] and Put treats it as absent. Its memory is reclaimed
// by a background sweep (every second by default, see [WithSweepInterval])
// that takes expired tasks from each shard's expiry heap in small batches,
// so the sweep never holds a lock for long and never scans live tasks.
//
// # Size
//
// With [WithMaxTasks] the store holds at most that many tasks: a new task
// beyond the limit evicts the task that expires soonest. Writes to an
// evicted task report [store.ErrConflict], reads [store.ErrNotFound].
//
// # Memory
//
// Put copies the steps of the State it is given into an array of the
// store's own, which it overwrites on the next write of the task unless a
// reader was handed it since; maps, which nobody changes in place, are kept
// as they are. Get and Watch hand readers the store's State of a running
// task without copying, which is what makes reads cheap; readers follow
// the [store.State] rule: treat states as read-only. A task written many
// times and seldom read so costs no allocation per write.
//
// An ended task is kept packed into a single string, which is about half
// the size of its State and holds no pointers: the garbage collector marks
// it without scanning it, so a store of many ended tasks adds little to
// each collection. Get and Watch unpack it for each reader, allocating the
// steps.
//
// Call [Store.Close] to stop the sweep and close every watch channel.
package memstore
