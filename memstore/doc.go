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
// States go in and out as copies (see [store.Store]): Put keeps a copy of
// the State it is given, and Get, Watch and List hand each reader a copy
// of its own, which it may change. A write that leaves a task's steps as
// they are (progress, result fields, a lease renewal) keeps the store's
// copy of them, which nobody else holds, rather than copying them again.
//
// A task that has ended, most of what a store holds, is kept in a smaller
// form: its steps with their times as integers, its result and error
// details encoded together in one string. Each reader gets a State
// rebuilt from it, the one written. A finished 5-step task with two result
// fields so takes about 1.4 KB rather than 1.9 KB.
//
// Call [Store.Close] to stop the sweep and close every watch channel.
package memstore
