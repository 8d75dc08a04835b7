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
// # Sharing
//
// The store keeps the State given to Put as it is and hands the same State
// to readers, without copying; this is what makes reads cheap. Callers
// follow the [store.State] rule: treat states as read-only.
//
// Call [Store.Close] to stop the sweep and close every watch channel.
package memstore
