// Package pgstore keeps task states, and the history of their changes, in
// PostgreSQL, so that every instance of a service reads and writes the
// same tasks and the record of what they did outlives them.
//
// A [Store] implements [store.Store], [store.Watcher] and [store.Lister]
// on a [pgxpool.Pool]:
//
//	pool, err := pgxpool.New(ctx, "postgres://localhost:5432/app")
//	...
//	s, err := pgstore.New(pool)
//	...
//	defer s.Close() // stops the reaper and ends the watches; the pool is the caller's
//	if err := s.Migrate(ctx); err != nil { // creates or updates the tables
//		...
//	}
//
// # Tables
//
// [Store.Migrate] creates, in the schema [WithSchema] names (default
// "taskstatus"), the tables that the embedded migrations (migrations/)
// describe, and records each migration it applies in a migrations table;
// an advisory lock makes instances that migrate at once apply each
// migration once.
//
//   - tasks: a row per task, its state as JSON text (the JSON served to
//     clients) beside the columns that writes compare (version,
//     incarnation, the latest write ids) and those that listings find
//     tasks by (status, kind, labels, creation time, lease end, expiry),
//     each with an index.
//   - history: a row per announced write of any task: its id, version,
//     time and state.
//
// The state is text, not jsonb: a prototype measured jsonb at about 20%
// more server CPU and WAL a write, and no query looks inside it.
//
// Most writes are HOT updates, which touch no index: the lease end and
// the expiry, which move with every write, are indexed in whole minutes
// (lease_min, expires_min) beside their exact values, and the tasks table
// leaves room on each page (fillfactor 70). The history has two indexes:
// by task, and a BRIN index of its time for the reaper. With the expiry
// indexed exactly, a benchmark of 32 tasks, each write a statement of its
// own, measured writes at 0.66 times the throughput of a raw single-row
// UPDATE, and at 0.73 without that index; BENCHMARKS.md has the figures,
// and what a history row costs.
//
// # Writes
//
// A [store.Write] is one statement, one round trip: an UPDATE ... WHERE
// id, version and incarnation are those the write was computed from (an
// INSERT ... ON CONFLICT for a write with Prev 0), which also pushes the
// write's id onto the task's latest [store.MinWriteIDs], and, in a CTE of
// the same statement, the INSERT of the history row, so that a write and
// its history commit together. Updates made at once share a statement
// (see Batching). A write that matches no row (a batched one once sent
// again alone) costs one more statement, which looks for its id among the
// task's latest: a write that was
// applied and is resent (its reply was lost) succeeds and changes
// nothing; any other is refused with [store.ErrConflict].
//
// Expiry is a column: a task whose time to live has passed is not read,
// listed, counted or updated, and can be created again, whether or not
// the reaper has removed it yet. Times to live are counted on the
// store's clock ([WithClock]).
//
// The store keeps the state it decoded last of each task it read, up to
// 4 MiB of their JSON: a Get, a watch's poll or a listing that reads the
// same JSON again returns a copy of that state without decoding it.
//
// # Batching
//
// The updates (Prev > 0) of the Puts made at once on a Store go to
// PostgreSQL together: a call that finds nothing in flight sends its
// update at once, alone, and while two statements are in flight the
// updates that come queue and go together in the next, as soon as one
// ends: at most 64, and one of each task (a second waits for a later
// statement). A call alone waits for no timer and no other call. The
// statement is the UPDATE of every write with their values as arrays
// (UPDATE ... FROM unnest(...)), with the INSERT of their history rows:
// one round trip, one transaction, one commit. It applies each write
// whose task is at the version and incarnation the write was computed
// from, as if each had been sent alone, and tells each call whether its
// own applied. Each call returns by its own deadline: a call whose
// context ends while it waits leaves the queue and is never sent; one
// whose context ends while its statement is in flight returns its
// context's error, and its write may have been applied, as for any write
// that times out. The statement itself ends by the store's timeout
// ([WithTimeout]). If it fails because the server cannot answer, each
// call gets its error, wrapping [store.ErrUnavailable]; if it fails
// otherwise (an error that a write of it may have caused), each write is
// sent again alone, so that only the one at fault fails. The statement
// waits for no lock: it skips a task that another transaction holds
// locked (such as a [TxStore]'s, until it ends), so that one such task
// holds up no other. A write that it did not apply, skipped or not, is
// sent again alone, which waits for the lock and tells a resend from a
// conflict as a write alone does. Creations and the writes of a TxStore
// are statements of their own.
//
// The server's CPU is what bounds writes: a statement of many writes
// spends much less a write than a statement each (opening the tables and
// their indexes, committing), so that 32 tasks written at once go faster
// than a raw single-row UPDATE each (see BENCHMARKS.md).
//
// # History and retention
//
// [Store.History] returns a task's transitions in order. History is kept
// for its own retention ([WithHistoryRetention]), counted from each write,
// however long the task itself lives. [Store.Reap], which the store runs
// in the background every [WithReapInterval], removes expired tasks and
// old history a bounded batch at a time ([WithReapBatch]), so that no
// table grows without bound and no statement holds many locks.
//
// # Watches
//
// A watch does not ride on the write: a prototype measured writes that
// call pg_notify in their transaction at 0.23 times the throughput of
// plain ones, because PostgreSQL serializes the commits of notifying
// transactions. Instead one goroutine per Store reads every watched task
// in one SELECT each poll interval ([WithPollInterval], 250 ms by
// default), and hands each watch the state of an announced version it has
// not seen. Writes cost nothing more while tasks are watched, a watcher
// hears of a change within one interval, and a watch needs no connection
// of its own. A watch ends when its task is deleted, expires, is created
// anew or cannot be decoded, and when the poll fails.
//
// # Creation in a transaction
//
// [Store.InTx] returns a [TxStore] whose calls run in a caller's pgx.Tx:
// a task created through it commits or rolls back with the business write
// it goes with.
//
// # Errors
//
// A server that cannot be reached, a connection lost, a call past its
// deadline ([WithTimeout]) and the SQLSTATE codes that mean the server
// cannot answer now (classes 08, 53 and 58, 57P01 to 57P05, and 57014, a
// statement canceled by the server's timeout) give errors wrapping
// [store.ErrUnavailable] (HTTP 503); stored data that cannot be decoded,
// [store.ErrCorrupt].
package pgstore
