package redisstore

// This file builds every Redis key and channel name the package uses. Each
// name of a task carries the task id as a hash tag, "{id}", so that a
// task's keys fall in one Redis Cluster slot. store.ValidateID rejects ids
// containing '{' or '}', and WithPrefix rejects such prefixes, so the tag
// is always the id.
//
// The scripts get the task's hash, their only key, in KEYS, and its
// channel in ARGV: a channel is not a key, and naming it in KEYS would make
// Redis Cluster refuse every write (TRYAGAIN) while the slot migrates, as
// for a multi-key command whose keys are not all on one node.

// DefaultPrefix is the prefix of every key when [WithPrefix] is not given.
const DefaultPrefix = "taskstatus:"

// taskKey returns the key of the hash that holds task id: "<prefix>{<id>}".
func taskKey(prefix, id string) string {
	return prefix + "{" + id + "}"
}

// eventsChannel returns the channel on which changes to task id are
// published: "<prefix>{<id>}:events".
func eventsChannel(prefix, id string) string {
	return taskKey(prefix, id) + ":events"
}
