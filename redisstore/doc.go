// Package redisstore keeps task states in Redis (or Valkey), so that every
// instance of a service reads and writes the same tasks.
//
// A [Store] implements [store.Store], [store.Watcher] and [store.Lister] on a
// [redis.UniversalClient]: a single server, a sentinel (failover) setup or a
// Redis Cluster.
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "localhost:6379",
//		ContextTimeoutEnabled: true, // let deadlines stop commands (see Deadlines)
//		DisableIdentity:       true, // Redis 7.0 refuses CLIENT SETINFO
//	})
//	s, err := redisstore.New(client, redisstore.WithTimeout(time.Second))
//	...
//	defer s.Close() // ends the watches; the client is the caller's to close
//
// go-redis logs some troubles of its own (a failed dial) to standard error,
// as raw text; [NewRedisLogger] sends them through a [slog.Logger] instead.
//
// # Stored form
//
// A task is one hash, which redis-cli HGETALL shows whole, with the
// fields:
//
//   - version: the task's version, in decimal;
//   - inc: its incarnation ([store.State.Incarnation]);
//   - writes: the ids of the task's last [store.MinWriteIDs] writes, newest
//     first, separated by spaces (an id that is not printable ASCII
//     without spaces, or starts with '~', is kept as '~' and its bytes in
//     hexadecimal);
//   - announced: the version last published to watchers, which quiet writes
//     do not change;
//   - index: what the indexes and the listing read without decoding the
//     state (see Listing): 8 bytes of the creation time, then the status,
//     kind, lease (in microseconds) and labels ("\x00key=value" each, and
//     "\x00"), separated by newlines.
//
// The state is in one more field, state: the JSON of the [store.State]
// (the JSON served to clients, times in RFC 3339 with nanoseconds, in
// UTC), so that a write sends it whole and Redis replaces one field.
//
// With [WithCompactEnded], a task that ended is kept in the compact form
// instead: fields that each hold one part of the state: status, kind,
// correlation_id, error_message, cancel_reason, attempt, the times
// (created_at, started_at, updated_at, completed_at, lease_until,
// cancel_requested_at) in nanoseconds since 1970, progress and
// previous_attempts as JSON, "label:<key>", and "result:<key>" and
// "error_details:<key>" with their JSON values. Step i is "step:<i>": its
// status, attempt, start and completion (nanoseconds after the task's
// creation, "-" for none) and name, separated by spaces, such as
// "success 1 1961927 2146741 parse", with "step:<i>:error",
// "step:<i>:progress" and "step:<i>:sub_steps" (JSON) when it has them.
// The writes field keeps four ids and a writes2 field the next four. A
// field whose value would be empty or zero is left out, and the id is the
// key's. Most such fields are of less than 64 bytes, and Redis keeps a
// hash of such fields in its compact encoding (a listpack, up to its
// hash-max-listpack-value of 64 bytes) rather than as a hash table:
// [WithCompactEnded] tells what that saves and costs. A state with a time
// that nanoseconds since 1970 cannot hold (before 1678 or after 2262) is
// kept as JSON, and so is a task that runs again. Every Store reads both
// forms.
//
// The version and the incarnation have fields of their own so that the
// write script compares them without decoding the state (a plain string
// key would make every write decode the whole state in Lua).
//
// Reading ignores fields it does not know, in the hash and in the JSON, so
// that a newer writer can add some. Data it cannot trust (bad JSON, a
// missing field, a version or inc field that disagrees with the JSON, an
// announced version above the version, a state of another task, an
// undefined status, a compact field that does not read) is reported with
// an error wrapping [store.ErrCorrupt]. Releases before the
// listing kept task "doc-123" under the key taskstatus:{doc-123}; this one
// does not read those keys: tasks written by them are not seen, and
// expire as they were set to.
//
// # Keys
//
// Tasks are spread over 16 shards by a hash of their id (CRC-32). With the
// default prefix [DefaultPrefix], task "doc-123", of shard 9, is kept in
//
//	taskstatus:{t9}t:doc-123     the hash
//	taskstatus:{t9}i:pending     the index of shard 9's pending tasks (one per status)
//	taskstatus:{t9}i:expiry      the index of shard 9's tasks by when they expire
//	taskstatus:{doc-123}:events  the channel its changes are published on
//
// The braces are a Redis Cluster hash tag: a task's hash and the indexes of
// its shard fall in one slot, so that one script changes them together.
// [store.ValidateID] rejects ids with braces, and [WithPrefix] prefixes
// with braces, so the tag cannot break.
//
// # Writes
//
// Put applies a [store.Write] with one Lua script, run with EVALSHA in one
// round trip (see Batching), which keeps the shard's indexes too (see
// Listing). The script refuses the write with an error reply that
// becomes [store.ErrConflict] unless the stored task is the one the write
// was computed from: none for Prev 0 (version 1 creates a task, a higher
// version restores one the store lost), or version Prev of the write's
// incarnation. It then writes the hash (in place, or anew when the task
// is written in the compact form or was kept in it), sets the time to live with PEXPIRE
// (or clears it with PERSIST) and, unless the write is quiet, publishes
// {"id":..., "version":..., "incarnation":...} on the task's channel, all
// atomically. A write whose id is among those in the writes field was
// applied already, its reply lost (go-redis resends a command after a
// dropped connection, and the tracker resends a write whose outcome it
// does not know): the script changes nothing and answers OK, however many
// writes came in between. Put refuses a write that [store.Write.Validate]
// refuses before any round trip.
//
// Delete deletes the hash and, if there was one, publishes version 0. A
// Get is one HGETALL. No write reads the task into Go first, and none uses
// WATCH/MULTI, so concurrent writers of one task never lose an update and
// never retry in a storm.
//
// The store keeps the state it decoded last of each task it read, up to
// 4 MiB of their JSON: a Get, a watch or a listing that reads the same
// JSON again returns a copy of that state without decoding it, so that a
// task polled by many clients is decoded once a version.
//
// # Batching
//
// The commands of Gets, Puts and Deletes made at once go to Redis
// together, in pipelines: a call that finds fewer than two in flight
// sends its command at once; otherwise calls queue, and go together in
// the next pipeline as soon as one is answered, or at once in a pipeline
// of their own once 16 are queued, up to 8 pipelines in flight. A call
// alone waits for no timer and no other call; each call gets its own
// reply and error, and returns by its own deadline. Redis runs the
// commands of a pipeline one after another, each atomically, as if they
// had been sent one by one. On a cluster, go-redis sends a pipeline's
// commands to their nodes, one round trip per node.
//
// # Listing
//
// Each shard has a sorted set per status, whose members are its tasks'
// index entries: the creation time (8 bytes, big-endian, so that byte
// order is time order) and the id, all scored 0, so that a set is ordered
// newest first by ZREVRANGEBYLEX, and a range of creation times is a range
// of members. A third set files the entries by when their tasks expire,
// by the server's clock. The write script moves a task's entry when its
// status changes and files it by its expiry; it and every listing take the
// entries of expired tasks out of the indexes, so that the indexes hold
// about the live tasks and no more (a write that changes a status takes
// out up to 4, a page that meets some up to 100 a shard, a count all).
//
// [Store.List] reads, in one round trip (per node of a cluster), a little
// more than its share of a page from each status index the filter names
// on each shard, from the page token's place, with ZRANGE BYLEX REV; it
// merges them and reads the newest page's tasks in a second round trip
// (their state fields; those kept in the compact form whole, in a third). A
// filter by kind, label or lease runs a script on each shard instead,
// which reads the index field of each task it passes over. [Store.Count]
// reads the size of each status index, or, for a kind or a label, one of
// the counters the scripts keep in the shard's hash "<prefix>{tN}i:counts"
// (by status and kind, status and label, status, kind and label), which
// they change exactly when a task's entry enters or leaves a status index;
// the expiry index's members carry the task's kind and labels, so that
// the counters of a task that expired are told. No request uses SCAN or
// KEYS.
//
// # Watching
//
// [Store.Watch] subscribes to the task's channel, waits for Redis to
// confirm the subscription, and only then reads the task, so a change made
// after the read is always announced. Notifications carry only the
// version: the task is read again for each newer one. Keyspace
// notifications are not used: they are often disabled.
//
// All the watches of a Store share one pub/sub connection (one go-redis
// PubSub) and three goroutines: a subscriber, which alone writes on the
// connection (SUBSCRIBE, UNSUBSCRIBE, PING), a receiver, which alone reads
// it, and a reader, which reads the watched tasks. A task's channel is
// subscribed once however many watch the task, and unsubscribed when its
// last watch ends; one read of the task serves all its watchers (one
// round trip reads every task that changed), and each is sent a copy of
// its own if the state is newer than the last it was sent. A watch's
// channel holds one state, which a newer one replaces if the reader has
// not taken it, so a slow reader holds up neither the connection nor the
// other watchers. A thousand event streams on one instance thus use one
// Redis connection, not a thousand, and a watch has no goroutine of its
// own. The connection and the goroutines are started by the first watch
// and stopped when the last one ends, or by [Store.Close].
//
// # Health and freshness
//
// Notifications alone cannot be trusted: a connection whose server side is
// gone may stay open and silent on the client's side (half-open), a
// cluster may lose a message between nodes, and an expiry, a FLUSHDB or a
// server that restarted without persistence publishes nothing. So, at each
// health interval ([WithHealthInterval], [DefaultHealthInterval] by
// default):
//
//   - the connection is asked for a reply (a PING, twice per interval when
//     no reply is due already); one that does not reply within the
//     interval, or fails, is replaced by a new one, and every watched task
//     is read again once Redis confirms its subscription on it;
//   - every watched task is checked, in one round trip (HMGET of its
//     version, inc and announced fields; no SCAN or KEYS), and read again
//     if it changed (a quiet write does not count), was replaced or has
//     disappeared.
//
// This bounds what a watcher sees. While Redis answers, a change is
// delivered within the health interval, plus the time of a read, whether
// its notification came or not (while a connection is being replaced,
// the checks go on), and a task that disappeared ends its watches within
// the health interval, plus the time of a read. A watch whose task has
// been neither read nor checked for longer than the health interval plus
// the store's timeout ([WithTimeout]) ends: a watcher's latest state was
// the stored one at most that long ago, or its channel is closed. The
// cost, per interval, is at most two PINGs on the connection, and one
// command per watched task in one round trip.
//
// # Closing
//
// [Store.Close] ends every watch (their channels close), stops the
// watches' goroutines and closes their connection, and makes every later
// call fail with [store.ErrUnavailable]. It does not close the client,
// which the caller owns and closes after the Store. A Store that nothing
// watches holds no connection and no goroutine.
//
// # Errors
//
// Errors wrap the sentinel errors of package store, testable with
// [errors.Is], and the client's error too:
//
//   - a missing hash: [store.ErrNotFound];
//   - a refused write: [store.ErrConflict];
//   - corrupt data, or a key of the wrong type: [store.ErrCorrupt];
//   - a server that is down, slow or closed (network errors, timeouts,
//     [redis.ErrClosed], [redis.ErrPoolTimeout]) or that answers LOADING,
//     READONLY, CLUSTERDOWN, MASTERDOWN, TRYAGAIN, BUSY, OOM, NOREPLICAS,
//     MISCONF or that it has too many clients, and a Store closed:
//     [store.ErrUnavailable]; a write that fails this way may or may not
//     have taken effect;
//   - a canceled context: [context.Canceled], not ErrUnavailable.
//
// # Deadlines
//
// Every call returns by its context's deadline or the store's timeout
// ([WithTimeout]), whichever comes first, whatever the client's options.
// go-redis stops a command at its context's deadline only if the client
// has ContextTimeoutEnabled set; without it (go-redis's default), it waits
// for the client's ReadTimeout and WriteTimeout, 5 seconds by default, on
// a server that accepts connections and does not answer. For such a
// client, each call runs in a goroutine of its own, and the caller stops
// waiting for it at its deadline; the call goes on in the background until
// the client's timeouts end it, holding a connection of the pool until
// then. Set ContextTimeoutEnabled to spare that goroutine and connection:
// the Store reads the option from a [redis.Client], [redis.ClusterClient]
// or [redis.Ring] and then calls the client directly.
//
// # Redis Cluster
//
// Nothing needs configuring: every script touches the keys of one shard,
// in one slot. The task's channel is passed as an argument,
// not as a key: naming it in KEYS would make the cluster refuse every write
// to the task (TRYAGAIN) while its slot migrates. A write during a
// migration is redirected by the client; one it gives up on reports
// [store.ErrUnavailable]. Changes are published with PUBLISH, which a
// Redis 7 cluster forwards to every node, so a watcher subscribed on any
// node hears them. Sharded pub/sub (SPUBLISH), which would keep them on the
// slot's shard, is not used: it needs Redis 7 and drops subscribers when a
// slot moves, and miniredis, used in tests, lacks it. The health check's
// commands are pipelined; go-redis sends each to the node of its key.
//
// Reads must go to masters: a client with ReadOnly, RouteByLatency or
// RouteRandomly set may read a replica that has not yet seen a write.
//
// # Falling back
//
// [OpenOrFallback] chooses once, at start-up, between Redis and another
// store given by the caller, and logs the choice. The package never falls
// back on its own, and never switches stores later: a Store whose Redis is
// down reports [store.ErrUnavailable].
package redisstore
