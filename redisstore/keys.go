package redisstore

// This file builds every Redis key and channel name the package uses. Each
// name of a task carries the task id as a hash tag, "{id}", so that all of
// them fall in one Redis Cluster slot and a script may touch them together.
// store.ValidateID rejects ids containing '{' or '}', and WithPrefix rejects
// such prefixes, so the tag is always the id.

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

// scriptKeys returns the KEYS of every script: the task's hash and its
// channel. The channel is not a key, but passing it in KEYS keeps the rule
// "every name a script uses is declared" and shows it shares the slot.
func scriptKeys(prefix, id string) []string {
	return []string{taskKey(prefix, id), eventsChannel(prefix, id)}
}
