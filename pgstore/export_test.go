package pgstore

// MigrationLock is the first key of the advisory lock Migrate holds, for
// the tests to hold it.
const MigrationLock = migrationLock

// SchemaVersion returns the number of migrations the package has.
func SchemaVersion() (int, error) {
	ms, err := readMigrations()
	return len(ms), err
}
