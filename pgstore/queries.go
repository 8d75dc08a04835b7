package pgstore

// queries are the statements of a Store, on the tables of its schema. The
// tables are described in migrations/.
type queries struct {
	get, update, updateBatch, insert, resent, delete string
	history, reapTasks, reapHistory, poll            string
}

func newQueries(schema string) queries {
	return queries{
		get:         qualify(schema, getSQL),
		update:      qualify(schema, updateSQL),
		updateBatch: qualify(schema, updateBatchSQL),
		insert:      qualify(schema, insertSQL),
		resent:      qualify(schema, resentSQL),
		delete:      qualify(schema, deleteSQL),
		history:     qualify(schema, historySQL),
		reapTasks:   qualify(schema, reapTasksSQL),
		reapHistory: qualify(schema, reapHistorySQL),
		poll:        qualify(schema, pollSQL),
	}
}

// getSQL reads a task that has not expired.
//
// $1 -> id; $2 -> now
const getSQL = `
SELECT incarnation, version, state FROM {schema}.tasks
WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)`

// The two writes of Store.Put take the same arguments, and return whether
// the write was applied. Both add the history row of an announced write
// in the same statement, so that a write and its history commit together
// in one round trip.
//
// $1 -> id; $2 -> the version the write was computed from (Prev)
// $3 -> the new version; $4 -> the incarnation
// $5 -> status; $6 -> kind; $7 -> labels; $8 -> created_ns; $9 -> lease_ns
// $10 -> expires_at, NULL for none; $11 -> the state's JSON
// $12 -> whether watchers are told of it (not quiet)
// $13 -> the write's id, NULL for none; $14 -> how many write ids to keep
// $15 -> now

// historyCTE ends both writes: it adds the history row of an announced
// write that applied (u holds its row), and returns whether it applied.
const historyCTE = `, h AS (
	INSERT INTO {schema}.history (task_id, version, recorded_at, state)
	SELECT id, $3::bigint, $15::timestamptz, $11::text FROM u WHERE $12::boolean
)
SELECT EXISTS (SELECT FROM u)`

// updateSQL applies a write computed from version Prev > 0 of a task
// that has not expired: it compares the version and the incarnation, and
// puts the write's id first among the task's latest.
const updateSQL = `
WITH u AS (
	UPDATE {schema}.tasks SET
		version = $3::bigint, status = $5, kind = $6, labels = $7, created_ns = $8,
		lease_ns = $9::bigint, lease_min = $9::bigint / 60000000000,
		expires_at = $10::timestamptz, expires_min = floor(extract(epoch FROM $10::timestamptz) / 60)::bigint,
		state = $11::text,
		announced = CASE WHEN $12::boolean THEN $3::bigint ELSE announced END,
		write_ids = CASE WHEN $13::bytea IS NULL THEN write_ids ELSE (ARRAY[$13::bytea] || write_ids)[1:$14::integer] END
	WHERE id = $1 AND version = $2 AND incarnation = $4 AND (expires_at IS NULL OR expires_at > $15::timestamptz)
	RETURNING id
)` + historyCTE

// updateBatchSQL applies several writes computed from versions Prev > 0,
// as updateSQL applies each, of tasks that differ, with their history
// rows, and returns the ordinal (from 1) of each that applied. It waits
// for no lock: a task that another transaction holds locked is skipped,
// its write not applied (l locks the others, in no order, as nothing
// waits). Each
// argument but the last two is an array of one element per write, in
// the same order:
//
// $1 -> id; $2 -> Prev; $3 -> the new version; $4 -> the incarnation
// $5 -> status; $6 -> kind; $7, $8 -> the first and last of its labels
// in $16 (from 1; none if the last comes before the first)
// $9 -> created_ns; $10 -> lease_ns; $11 -> expires_at, NULL for none
// $12 -> the state's JSON; $13 -> whether watchers are told of it
// $14 -> the write's id, NULL for none; $15 -> when it was made
// $16 -> the labels of every write; $17 -> how many write ids to keep
const updateBatchSQL = `
WITH l AS (
	SELECT id FROM {schema}.tasks WHERE id = ANY($1::text[]) FOR NO KEY UPDATE SKIP LOCKED
), u AS (
	UPDATE {schema}.tasks t SET
		version = w.version, status = w.status, kind = w.kind, labels = ($16::text[])[w.labels_first:w.labels_last],
		created_ns = w.created_ns, lease_ns = w.lease_ns, lease_min = w.lease_ns / 60000000000,
		expires_at = w.expires_at, expires_min = floor(extract(epoch FROM w.expires_at) / 60)::bigint,
		state = w.state,
		announced = CASE WHEN w.announce THEN w.version ELSE t.announced END,
		write_ids = CASE WHEN w.write_id IS NULL THEN t.write_ids ELSE (ARRAY[w.write_id] || t.write_ids)[1:$17::integer] END
	FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::text[], $6::text[], $7::integer[], $8::integer[],
		$9::bigint[], $10::bigint[], $11::timestamptz[], $12::text[], $13::boolean[], $14::bytea[], $15::timestamptz[])
		WITH ORDINALITY AS w(id, prev, version, inc, status, kind, labels_first, labels_last,
			created_ns, lease_ns, expires_at, state, announce, write_id, at, ord)
	WHERE t.id = w.id AND t.id IN (SELECT id FROM l)
		AND t.version = w.prev AND t.incarnation = w.inc AND (t.expires_at IS NULL OR t.expires_at > w.at)
	RETURNING w.ord, w.id, w.version, w.at, w.state, w.announce
), h AS (
	INSERT INTO {schema}.history (task_id, version, recorded_at, state)
	SELECT id, version, at, state FROM u WHERE announce
)
SELECT ord FROM u`

// insertSQL applies a write with Prev 0: it creates the task, or replaces
// one that has expired but was not reaped yet.
const insertSQL = `
WITH u AS (
	INSERT INTO {schema}.tasks AS t
		(id, incarnation, version, announced, status, kind, labels, created_ns, lease_ns, lease_min, expires_at, expires_min, write_ids, state)
	VALUES ($1, $4, $3::bigint, CASE WHEN $12::boolean THEN $3::bigint ELSE 0 END, $5, $6, $7, $8,
		$9::bigint, $9::bigint / 60000000000, $10::timestamptz, floor(extract(epoch FROM $10::timestamptz) / 60)::bigint,
		CASE WHEN $13::bytea IS NULL THEN '{}'::bytea[] ELSE (ARRAY[$13::bytea])[1:$14::integer] END, $11::text)
	ON CONFLICT (id) DO UPDATE SET
		incarnation = excluded.incarnation, version = excluded.version, announced = excluded.announced,
		status = excluded.status, kind = excluded.kind, labels = excluded.labels,
		created_ns = excluded.created_ns, lease_ns = excluded.lease_ns, lease_min = excluded.lease_min,
		expires_at = excluded.expires_at, expires_min = excluded.expires_min,
		write_ids = excluded.write_ids, state = excluded.state
	WHERE t.expires_at <= $15::timestamptz AND $2::bigint = 0
	RETURNING id
)` + historyCTE

// resentSQL reports whether a write id is among the latest of a task that
// has not expired: the write was applied, and is resent.
//
// $1 -> id; $2 -> the write's id; $3 -> now
const resentSQL = `
SELECT $2::bytea = ANY(write_ids) FROM {schema}.tasks
WHERE id = $1 AND (expires_at IS NULL OR expires_at > $3)`

// deleteSQL removes a task. $1 -> id
const deleteSQL = `DELETE FROM {schema}.tasks WHERE id = $1`

// historySQL reads a task's history, in the order written. $1 -> id
const historySQL = `SELECT state FROM {schema}.history WHERE task_id = $1 ORDER BY seq`

// reapTasksSQL removes at most a batch of tasks that expired, skipping
// those another reaper holds. The outer condition is checked again on the
// row as it is when locked: a task written again meanwhile stays.
//
// $1 -> now; $2 -> the batch size
const reapTasksSQL = `
DELETE FROM {schema}.tasks WHERE id IN (
	SELECT id FROM {schema}.tasks
	WHERE expires_min <= floor(extract(epoch FROM $1::timestamptz) / 60)::bigint AND expires_at <= $1
	LIMIT $2 FOR UPDATE SKIP LOCKED
) AND expires_at <= $1`

// reapHistorySQL removes at most a batch of the history rows recorded
// before a time, found through the BRIN index of recorded_at, and then by
// their place (ctid): history has no index on seq, which every write
// would pay for.
//
// $1 -> the oldest time kept; $2 -> the batch size
const reapHistorySQL = `
DELETE FROM {schema}.history WHERE ctid = ANY(ARRAY(
	SELECT ctid FROM {schema}.history WHERE recorded_at < $1
	LIMIT $2 FOR UPDATE SKIP LOCKED
))`

// pollSQL reads the watched tasks that have not expired: each one's
// incarnation, version and announced version, and its state if a watcher
// has not seen its announced version.
//
// $1 -> ids; $2 -> the version each one's watchers have seen; $3 -> now
const pollSQL = `
SELECT t.id, t.incarnation, t.version, t.announced, CASE WHEN t.announced > w.seen THEN t.state END
FROM unnest($1::text[], $2::bigint[]) AS w(id, seen)
JOIN {schema}.tasks t ON t.id = w.id
WHERE t.expires_at IS NULL OR t.expires_at > $3`
