package pgstore

// MigrationLock is the first key of the advisory lock Migrate holds, for
// the tests to hold it.
const MigrationLock = migrationLock

// SchemaVersion returns the number of migrations the package has.
func SchemaVersion() (int, error) {
	ms, err := readMigrations()
	return len(ms), err
}

// MaxSending is how many statements of updates a Store has in flight at
// most.
const MaxSending = maxSending

// Queued returns how many updates wait for a statement of s.
func Queued(s *Store) int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return len(s.batch.queue)
}

// Updated returns the ids of the tasks that the statement sql, run with
// args, updates, if it is one of the updates of a Store on schema, or nil.
func Updated(schema, sql string, args []any) []string {
	switch sql {
	case qualify(schema, updateSQL):
		return []string{args[0].(string)}
	case qualify(schema, updateBatchSQL):
		return args[0].([]string)
	}
	return nil
}
