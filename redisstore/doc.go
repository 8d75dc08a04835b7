// Package redisstore keeps task states in Redis (or Valkey), so that every
// instance of a service reads and writes the same tasks.
//
// A [Store] implements [store.Store] and [store.Watcher] on a
// [redis.UniversalClient]: a single server, a sentinel (failover) setup or a
// Redis Cluster.
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "localhost:6379",
//		ContextTimeoutEnabled: true, // let deadlines bound socket I/O
//		DisableIdentity:       true, // Redis 7.0 refuses CLIENT SETINFO
//	})
//	s, err := redisstore.New(client, redisstore.WithTimeout(time.Second))
//
// # Stored form
//
// A task is one hash with three fields:
//
//   - version: the task's version, in decimal;
//   - state: the JSON of the [store.State] (the JSON served to clients, times
//     in RFC 3339 with nanoseconds, in UTC);
//   - put_id: a random id of the Put call that wrote it.
//
// The version has a field of its own so that the write script compares it
// without decoding JSON (a plain string key would make every write decode
// the whole state in Lua), and the state stays one JSON document so that it
// reads whole in one command and stays readable with redis-cli HGETALL.
// A hash field per State field was not chosen: steps, details and results
// are nested, and would be JSON inside the hash anyway. The put_id field
// lets a write that go-redis resends after a lost reply recognise itself
// instead of reporting a conflict with its own first attempt.
//
// Reading ignores fields it does not know, in the hash and in the JSON, so
// that a newer writer can add some. Data it cannot trust (bad JSON, a missing
// field, a version field that disagrees with the JSON, a state of another
// task, an undefined status) is reported with an error wrapping
// [store.ErrCorrupt]. Put refuses undefined statuses up front.
//
// # Keys
//
// With the default prefix [DefaultPrefix], task "doc-123" is kept in
//
//	taskstatus:{doc-123}          the hash
//	taskstatus:{doc-123}:events   the channel its changes are published on
//
// The braces are a Redis Cluster hash tag: both names fall in the slot of the
// id. [store.ValidateID] rejects ids with braces, and [WithPrefix] prefixes
// with braces, so the tag cannot break.
//
// # Writes
//
// Every write is one Lua script, run with EVALSHA in one round trip: Put
// compares the stored version with the one it expects, writes the hash, sets
// the time to live with PEXPIRE (or clears it with PERSIST) and publishes
// {"id":..., "version":...} on the task's channel, all atomically. Delete
// deletes the hash and, if there was one, publishes version 0. A stale write
// is refused by the script with an error reply that becomes
// [store.ErrConflict]. No write reads the task into Go first, and none uses
// WATCH/MULTI, so concurrent writers of one task never lose an update and
// never retry in a storm.
//
// A Get is one HGETALL.
//
// # Watching
//
// [Store.Watch] subscribes to the task's channel, waits for Redis to
// confirm the subscription, and only then reads the task, so a change made
// after the read is always announced. Notifications carry only the
// version: the task is re-read for each newer one. Keyspace notifications
// are not used: they are often disabled, and a task that expires is
// noticed by re-reading it when its time to live ends.
//
// All the watches of a Store share one pub/sub connection (one go-redis
// PubSub) and two goroutines: a receiver, which reads the connection, and a
// subscriber, which sends SUBSCRIBE and UNSUBSCRIBE on it. A task's channel
// is subscribed once however many watch the task, and unsubscribed when
// its last watch ends; one read of the task after a notification serves
// all its watchers, each of which is sent the state if it is newer than
// the last it was sent. A watch's channel holds one state, which a newer
// one replaces if the reader has not taken it, so a slow reader holds up
// neither the connection nor the other watchers. A thousand event streams
// on one instance thus use one Redis connection, not a thousand, and a
// watch has no goroutine of its own.
//
// The connection is opened by the first watch and closed as soon as the
// last one ends: a Store has no Close method, and holds nothing while
// nothing is watched. After a lost connection go-redis reconnects and
// subscribes again, and every watched task is re-read once Redis confirms
// it; see [Store.Watch] for when watching gives up. On a Redis Cluster the
// connection goes to one node, which hears every change (see Redis
// Cluster below).
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
//     READONLY, CLUSTERDOWN, MASTERDOWN or TRYAGAIN: [store.ErrUnavailable];
//     a write that fails this way may or may not have taken effect;
//   - a canceled context: [context.Canceled], not ErrUnavailable.
//
// Every call is bounded by the store's timeout ([WithTimeout]). For the
// bound to hold on a slow connection, set ContextTimeoutEnabled in the
// client's options.
//
// # Redis Cluster
//
// Nothing needs configuring: every script touches one key, the task's
// hash, and names it in KEYS. The task's channel is passed as an argument,
// not as a key: naming it in KEYS would make the cluster refuse every write
// to the task (TRYAGAIN) while its slot migrates. A write during a
// migration is redirected by the client; one it gives up on reports
// [store.ErrUnavailable]. Changes are published with PUBLISH, which a
// Redis 7 cluster forwards to every node, so a watcher subscribed on any
// node hears them. Sharded pub/sub (SPUBLISH), which would keep them on the
// slot's shard, is not used: it needs Redis 7 and drops subscribers when a
// slot moves, and miniredis, used in tests, lacks it.
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
