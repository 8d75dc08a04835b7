package redisstore

import (
	"hash/crc32"
	"strconv"
)

// This file builds every Redis key and channel name the package uses.
//
// Tasks are spread over [shards] index shards. Every key of a shard, its
// tasks' hashes and its indexes, carries the shard's hash tag, "{tN}", so
// that they fall in one Redis Cluster slot: the write script changes a task
// and its index entries atomically in one round trip, on one node.
// store.ValidateID rejects ids containing '{' or '}', and WithPrefix
// rejects such prefixes, so the tag is always the shard's.
//
// The scripts get the task's hash and the shard's expiry index in KEYS,
// and build the names of the shard's status indexes from the index prefix
// they get in ARGV (the same slot). A task's channel is passed in ARGV
// too: a channel is not a key, and naming it in KEYS would make Redis
// Cluster refuse every write (TRYAGAIN) while the slot migrates, as for a
// multi-key command whose keys are not all on one node.

// DefaultPrefix is the prefix of every key when [WithPrefix] is not given.
const DefaultPrefix = "taskstatus:"

// shards is how many index shards tasks are spread over. A listing reads
// every shard, a write one; 16 spread a cluster's load over up to 16
// slots (and so nodes) while keeping a page at 16 reads in one round trip
// per node.
const shards = 16

// shardOf returns the shard of task id.
func shardOf(id string) int {
	return int(crc32.ChecksumIEEE([]byte(id)) % shards)
}

// keyspace names the keys under one prefix. It builds the prefixes of
// each shard's keys once, so that naming a key costs one concatenation:
// a page of a listing names 66 keys, a write four.
type keyspace struct {
	prefix string
	shard  [shards]shardKeys
}

// shardKeys are the prefixes and keys of one shard n:
//   - tasks, "<prefix>{tn}t:", the prefix of its tasks' hashes;
//   - index, "<prefix>{tn}i:", the prefix of its index keys: the status
//     index of status s is the index prefix and s;
//   - expiry, its expiry index: the index prefix and "expiry".
type shardKeys struct {
	tasks, index, expiry string
}

// newKeyspace returns the keyspace of prefix.
func newKeyspace(prefix string) keyspace {
	ks := keyspace{prefix: prefix}
	for n := range shards {
		shard := prefix + "{t" + strconv.Itoa(n) + "}"
		ks.shard[n] = shardKeys{tasks: shard + "t:", index: shard + "i:", expiry: shard + "i:expiry"}
	}
	return ks
}

// task returns the key of the hash that holds task id:
// "<prefix>{tN}t:<id>", N its shard.
func (ks *keyspace) task(id string) string {
	return ks.shard[shardOf(id)].tasks + id
}

// events returns the channel on which changes to task id are published:
// "<prefix>{<id>}:events".
func (ks *keyspace) events(id string) string {
	return ks.prefix + "{" + id + "}:events"
}
