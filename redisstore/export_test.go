package redisstore

// TaskKey returns the key of the hash that holds task id, for the tests
// that read or write a task's hash directly.
func TaskKey(prefix, id string) string {
	return taskKey(prefix, id)
}
