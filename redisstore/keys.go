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

// shardPrefix returns the prefix of the keys of shard n: "<prefix>{tn}".
func shardPrefix(prefix string, n int) string {
	return prefix + "{t" + strconv.Itoa(n) + "}"
}

// taskKey returns the key of the hash that holds task id:
// "<prefix>{tN}t:<id>", N its shard.
func taskKey(prefix, id string) string {
	return taskPrefix(prefix, shardOf(id)) + id
}

// taskPrefix returns the prefix of the keys of shard n's tasks:
// "<prefix>{tn}t:".
func taskPrefix(prefix string, n int) string {
	return shardPrefix(prefix, n) + "t:"
}

// indexPrefix returns the prefix of the index keys of shard n:
// "<prefix>{tn}i:". The status index of status s is the index prefix and
// s; the expiry index is the index prefix and "expiry".
func indexPrefix(prefix string, n int) string {
	return shardPrefix(prefix, n) + "i:"
}

// expiryKey returns the key of shard n's expiry index.
func expiryKey(prefix string, n int) string {
	return indexPrefix(prefix, n) + "expiry"
}

// eventsChannel returns the channel on which changes to task id are
// published: "<prefix>{<id>}:events".
func eventsChannel(prefix, id string) string {
	return prefix + "{" + id + "}:events"
}
